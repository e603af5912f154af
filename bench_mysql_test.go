package redstream_test

import (
	"context"
	"testing"

	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// pairMySQLDBs is pairDBs on MariaDB: two *gorm.DB on one fresh database,
// off without the plugin, on with it.
func pairMySQLDBs(b *testing.B, opts redstream.ProducerOptions) (off, on *gorm.DB) {
	b.Helper()
	rdb, ns := testenv.Redis(b)
	dsn := testenv.MySQLDatabase(b)
	open := func() *gorm.DB {
		db, err := gorm.Open(gormmysql.Open(dsn), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			b.Fatal(err)
		}
		sqlDB, _ := db.DB()
		b.Cleanup(func() { sqlDB.Close() })
		return db
	}
	off, on = open(), open()
	opts.Namespace = ns
	p := mustProducer(rdb, &opts)
	b.Cleanup(func() { p.Close(context.Background()) })
	if err := on.Use(redstream.NewPlugin(p)); err != nil {
		b.Fatal(err)
	}
	if err := off.AutoMigrate(&Product{}); err != nil {
		b.Fatal(err)
	}
	return off, on
}

// BenchmarkMySQLCreateSingle is BenchmarkCreateSingle/publish=sync on
// MariaDB: one create per implicit transaction, plugin on vs off.
func BenchmarkMySQLCreateSingle(b *testing.B) {
	for _, mode := range delayModes {
		b.Run(mode.name, func(b *testing.B) {
			off, on := pairMySQLDBs(b, redstream.ProducerOptions{KeepDelayMessages: mode.keep})
			create := func(db *gorm.DB) func() {
				return func() {
					if err := db.Create(&Product{Title: "bench", Price: 1}).Error; err != nil {
						b.Fatal(err)
					}
				}
			}
			interleave(b, "create", create(off), create(on), nil)
		})
	}
}

// BenchmarkMySQLCreateTx1000 is BenchmarkCreateTx1000 on MariaDB: 1,000
// creates in one transaction, plugin on vs off.
func BenchmarkMySQLCreateTx1000(b *testing.B) {
	for _, mode := range delayModes {
		b.Run(mode.name, func(b *testing.B) {
			off, on := pairMySQLDBs(b, redstream.ProducerOptions{KeepDelayMessages: mode.keep})
			run := func(db *gorm.DB) func() {
				return func() {
					err := db.Transaction(func(tx *gorm.DB) error {
						for range 1000 {
							if err := tx.Create(&Product{Title: "bench", Price: 1}).Error; err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			interleave(b, "tx", run(off), run(on), nil)
		})
	}
}
