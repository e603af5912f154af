package redstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"strings"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// exampleEnv connects to the test services with a fresh namespace and
// schema, and returns a function that removes both.
func exampleEnv() (rdb *redis.Client, ns string, db *gorm.DB, cleanup func()) {
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		log.Fatal(err)
	}
	rdb = redis.NewClient(opts)
	b := make([]byte, 6)
	rand.Read(b)
	ns = "ex" + hex.EncodeToString(b)
	schema := "ex_" + hex.EncodeToString(b)

	admin, err := gorm.Open(postgres.Open(testenv.DatabaseURL()), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		log.Fatal(err)
	}
	db, err = gorm.Open(postgres.New(postgres.Config{DSN: testenv.DatabaseURL() + "&search_path=" + schema}),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	return rdb, ns, db, func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, ns+":*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
		admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		if sqlDB, err := admin.DB(); err == nil {
			sqlDB.Close()
		}
	}
}

// printStream prints a stream's entries with their key, less the namespace.
func printStream(rdb *redis.Client, ns, key string) {
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Println(strings.TrimPrefix(key, ns+":"), m.Values["payload"])
	}
}

// The plugin writes each changed record's id to the delay stream just
// before COMMIT and to the main stream right after it, deleting the delay
// message in the same step; a rolled-back transaction writes nothing.
func ExampleNewPlugin() {
	rdb, ns, db, cleanup := exampleEnv()
	defer cleanup()

	producer, err := redstream.NewProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Use(redstream.NewPlugin(producer)); err != nil {
		log.Fatal(err)
	}
	if err := db.AutoMigrate(&Product{}); err != nil {
		log.Fatal(err)
	}

	db.Create(&Product{Title: "tea"})
	db.Transaction(func(tx *gorm.DB) error {
		tx.Create(&Product{Title: "cake"})
		return fmt.Errorf("changed my mind") // rolled back: no message
	})

	keys := producer.Keys()
	printStream(rdb, ns, keys.Stream("products"))
	st := producer.Stats()
	fmt.Println("delay messages written:", st.DelayMessages, "left:", rdb.XLen(context.Background(), keys.Delay("products")).Val())
	// Output:
	// redstream:stream:products {"id":1}
	// delay messages written: 1 left: 0
}

// Bulk wraps a write the plugin cannot see, here raw SQL: delay messages
// before it, main-stream messages after it.
func ExampleProducer_Bulk() {
	rdb, ns, db, cleanup := exampleEnv()
	defer cleanup()
	db.AutoMigrate(&Product{})
	db.Create(&[]Product{{Title: "a"}, {Title: "b"}})

	producer, err := redstream.NewProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	refs := []redstream.Ref{{Stream: "products", ID: 1}, {Stream: "products", ID: 2}}
	err = producer.Bulk(ctx, refs, func(ctx context.Context) error {
		return db.WithContext(ctx).Exec("UPDATE products SET price = price + 1").Error
	})
	if err != nil {
		log.Fatal(err)
	}
	st := producer.Stats()
	fmt.Println("delay:", st.DelayMessages, "main:", st.QueueMessages)
	// Output:
	// delay: 2 main: 2
}

// BulkQuery walks every row a query matches in primary-key pages, so a
// batch update of millions of rows never holds them all in memory.
func ExampleProducer_BulkQuery() {
	rdb, ns, db, cleanup := exampleEnv()
	defer cleanup()
	db.AutoMigrate(&Product{})
	db.Create(&[]Product{{Price: 5}, {Price: 50}, {Price: 7}})

	producer, err := redstream.NewProducer(rdb, &redstream.ProducerOptions{Namespace: ns, BatchSize: 1000})
	if err != nil {
		log.Fatal(err)
	}
	err = producer.BulkQuery(context.Background(), db.Model(&Product{}).Where("price < ?", 10),
		func(ctx context.Context, page *gorm.DB) error {
			return page.Update("price", 10).Error
		})
	if err != nil {
		log.Fatal(err)
	}
	printStream(rdb, ns, producer.Keys().Stream("products"))
	// Output:
	// redstream:stream:products {"id":1}
	// redstream:stream:products {"id":3}
}

// ShardName spreads a model over several streams by key, so that the
// changes of one record stay in order in one stream.
func ExampleShardName() {
	for _, id := range []int64{1, 2, 3} {
		fmt.Println(redstream.ShardName("products", id, 4))
	}
	// Output:
	// products-3
	// products-1
	// products-3
}

// Stream ids order numerically, never as text.
func ExampleID_Compare() {
	a, b := redstream.MustParseID("999-0"), redstream.MustParseID("1000-0")
	fmt.Println(a.Compare(b), "999-0" < "1000-0")
	fmt.Println(redstream.MustParseID("5-9").Less(redstream.MustParseID("5-10")))
	// Output:
	// -1 false
	// true
}
