// Command products is a small GORM application whose products table
// redstream keeps in sync with Elasticsearch. For a bounded time it creates,
// updates and soft-deletes products through GORM (the redstream plugin
// captures those writes), and now and then changes many prices at once
// outside the plugin's view, wrapped in Producer.BulkQuery (a GORM batch
// update) or Producer.Bulk (raw SQL).
//
// Usage:
//
//	products [-duration 20s] [-interval 20ms] [-bulk-every 2s] [-database URL] [-redis URL] [-namespace NS] [-setup]
//
// -setup creates the table and exits. redstream.yaml next to this file is
// the worker's configuration; README.md shows both running.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/dburl"
)

// Product is the synced model. DeletedAt makes deletes soft; UpdatedAt is
// the version column of the worker's configuration.
type Product struct {
	ID        uint64 `gorm:"primaryKey"`
	Name      string `gorm:"not null"`
	Category  string `gorm:"not null;index"`
	Price     int64  `gorm:"not null"` // cents
	Stock     int    `gorm:"not null"`
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt `gorm:"index"`
}

var categories = []string{"tea", "coffee", "cake", "bread", "fruit"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// stats counts what the app did.
type stats struct {
	created, updated, deleted, bulks, bulkRows int
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("products", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 20*time.Second, "how long to keep writing")
	interval := fs.Duration("interval", 20*time.Millisecond, "pause between two writes")
	dbURL := fs.String("database", or(getenv("DATABASE_URL"), "postgres://redstream:redstream@127.0.0.1:5432/redstream_test?sslmode=disable"), "PostgreSQL or MySQL `URL`: postgres://…, mysql://… or the MySQL driver's DSN (default $DATABASE_URL)")
	redisURL := fs.String("redis", or(getenv("REDIS_URL"), "redis://127.0.0.1:6379/0"), "Redis `URL` (default $REDIS_URL)")
	bulkEvery := fs.Duration("bulk-every", 2*time.Second, "pause between two bulk price changes")
	ns := fs.String("namespace", "", "redstream key `namespace`; the worker's redis.namespace")
	setup := fs.Bool("setup", false, "create the products table and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "products: %v\n", err)
		return 1
	}

	dialector, now, err := openDatabase(*dbURL)
	if err != nil {
		return fail(fmt.Errorf("-database: %w", err))
	}
	db, err := gorm.Open(dialector, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return fail(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return fail(err)
	}
	defer sqlDB.Close()
	if err := db.WithContext(ctx).AutoMigrate(&Product{}); err != nil {
		return fail(fmt.Errorf("create the table: %w", err))
	}
	if *setup {
		fmt.Fprintln(stdout, "products: table ready")
		return 0
	}

	opts, err := redis.ParseURL(*redisURL)
	if err != nil {
		return fail(fmt.Errorf("-redis: %w", err))
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	producer, err := redstream.NewProducer(rdb, &redstream.ProducerOptions{Namespace: *ns})
	if err != nil {
		return fail(err)
	}
	// From here on, every create, update and delete through db writes its
	// messages.
	if err := db.Use(redstream.NewPlugin(producer)); err != nil {
		return fail(err)
	}

	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	a := &app{db: db.WithContext(ctx), producer: producer, now: now}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	bulkTick := time.NewTicker(*bulkEvery)
	defer bulkTick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "products: %d created, %d updated, %d soft-deleted, %d bulk price changes (%d rows)\n",
				a.created, a.updated, a.deleted, a.bulks, a.bulkRows)
			return 0
		case <-bulkTick.C:
			err = a.bulk(ctx)
		case <-tick.C:
			err = a.step()
		}
		if err != nil && ctx.Err() == nil {
			return fail(err)
		}
	}
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type app struct {
	db       *gorm.DB
	producer *redstream.Producer
	now      string // SQL for the current time, as updated_at holds it
	stats
}

// step makes one change through GORM: mostly creates, then updates, and
// some soft deletes.
func (a *app) step() error {
	n := rand.IntN(100)
	if n < 45 {
		p := Product{
			Name:     fmt.Sprintf("%s #%d", categories[rand.IntN(len(categories))], rand.IntN(10000)),
			Category: categories[rand.IntN(len(categories))],
			Price:    100 + rand.Int64N(5000),
			Stock:    rand.IntN(100),
		}
		if err := a.db.Create(&p).Error; err != nil {
			return fmt.Errorf("create: %w", err)
		}
		a.created++
		return nil
	}
	var p Product
	err := a.db.Where("id >= ?", a.randomID()).Order("id").Take(&p).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pick a product: %w", err)
	}
	if n < 90 {
		if err := a.db.Model(&p).Updates(map[string]any{"price": 100 + rand.Int64N(5000), "stock": rand.IntN(100)}).Error; err != nil {
			return fmt.Errorf("update %d: %w", p.ID, err)
		}
		a.updated++
		return nil
	}
	if err := a.db.Delete(&p).Error; err != nil { // soft: sets deleted_at
		return fmt.Errorf("delete %d: %w", p.ID, err)
	}
	a.deleted++
	return nil
}

func (a *app) randomID() uint64 {
	var maxID uint64
	_ = a.db.Model(&Product{}).Select("coalesce(max(id), 0)").Scan(&maxID).Error
	if maxID == 0 {
		return 0
	}
	return 1 + rand.Uint64N(maxID)
}

// bulk changes many prices at once, alternately with a GORM batch update
// (Producer.BulkQuery: keys read page by page) and with raw SQL
// (Producer.Bulk with the ids at hand). The plugin sees neither.
func (a *app) bulk(ctx context.Context) error {
	cat := categories[rand.IntN(len(categories))]
	if a.bulks%2 == 0 {
		// A 10% price rise for a category.
		err := a.producer.BulkQuery(ctx, a.db.Model(&Product{}).Where("category = ?", cat),
			func(ctx context.Context, page *gorm.DB) error {
				res := page.Update("price", gorm.Expr("price * 11 / 10"))
				a.bulkRows += int(res.RowsAffected)
				return res.Error
			})
		if err != nil {
			return fmt.Errorf("price rise: %w", err)
		}
	} else {
		// A sale on the cheapest products of a category, in raw SQL.
		var ids []uint64
		if err := a.db.Model(&Product{}).Where("category = ?", cat).Order("price").Limit(20).Pluck("id", &ids).Error; err != nil {
			return fmt.Errorf("pick the sale: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		refs := make([]redstream.Ref, len(ids))
		for i, id := range ids {
			refs[i] = redstream.Ref{Stream: "products", ID: id}
		}
		err := a.producer.Bulk(ctx, refs, func(ctx context.Context) error {
			res := redstream.SkipCapture(a.db.WithContext(ctx)).Exec(
				"UPDATE products SET price = price * 9 / 10, updated_at = "+a.now+" WHERE id IN ?", ids)
			a.bulkRows += int(res.RowsAffected)
			return res.Error
		})
		if err != nil {
			return fmt.Errorf("sale: %w", err)
		}
	}
	a.bulks++
	return nil
}

// openDatabase returns the GORM dialector of a database URL and the SQL of
// the current time as its updated_at column holds it: PostgreSQL's now(),
// or on MySQL and MariaDB UTC_TIMESTAMP(6), as GORM writes DATETIME
// columns in UTC (loc=UTC; parseTime lets it read them back).
func openDatabase(url string) (gorm.Dialector, string, error) {
	driver, dsn, err := dburl.Parse(url)
	if err != nil {
		return nil, "", err
	}
	if driver != dburl.MySQL {
		return postgres.Open(dsn), "now()", nil
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, "", err
	}
	cfg.ParseTime, cfg.Loc = true, time.UTC
	return gormmysql.Open(cfg.FormatDSN()), "UTC_TIMESTAMP(6)", nil
}
