package redstream_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// Product is the test model: an integer key and a soft-delete column.
type Product struct {
	ID        int64 `gorm:"primaryKey"`
	Title     string
	Price     int
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt
}

// logBuffer collects log output, safe for concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is one test's database, Redis namespace, producer and plugin.
type env struct {
	db   *gorm.DB
	rdb  *redis.Client
	p    *redstream.Producer
	keys redstream.Keys
	dsn  string
	logs *logBuffer
	keep bool // KeepDelayMessages
	// mysql: the database is MariaDB (or MySQL), opened with
	// gorm.io/driver/mysql; dsn is then a go-sql-driver/mysql DSN.
	mysql bool
}

// param returns the n-th (from 1) bind parameter of the env's database:
// $n on PostgreSQL, ? on MySQL.
func (e *env) param(n int) string {
	if e.mysql {
		return "?"
	}
	return "$" + strconv.Itoa(n)
}

// sqlDB opens a separate *sql.DB on the env's database.
func (e *env) sqlDB(t testing.TB) *sql.DB {
	if e.mysql {
		return testenv.MySQLSQL(t, e.dsn)
	}
	return testenv.SQL(t, e.dsn)
}

// mode is one way of configuring GORM; the plugin must behave the same in
// every one.
type mode struct {
	name string
	cfg  func() *gorm.Config
	// simple selects pgx's simple protocol, or on MySQL the driver's
	// interpolateParams (no server-side prepared statements).
	simple bool
	// mysql runs the mode on MariaDB (or MySQL) with gorm.io/driver/mysql.
	mysql bool
	// viaConfig registers the plugin through gorm.Config.Plugins.
	viaConfig bool
	// keep sets ProducerOptions.KeepDelayMessages (the Ruby gem's way).
	keep bool
}

var modes = []mode{
	{name: "default", cfg: func() *gorm.Config { return &gorm.Config{} }},
	{name: "skip_default_tx", cfg: func() *gorm.Config { return &gorm.Config{SkipDefaultTransaction: true} }},
	{name: "prepare_stmt", cfg: func() *gorm.Config { return &gorm.Config{PrepareStmt: true} }},
	{name: "prepare_stmt_skip_default_tx", cfg: func() *gorm.Config {
		return &gorm.Config{PrepareStmt: true, SkipDefaultTransaction: true}
	}},
	{name: "plugins_config_prepare_stmt", cfg: func() *gorm.Config { return &gorm.Config{PrepareStmt: true} }, viaConfig: true},
	{name: "simple_protocol", cfg: func() *gorm.Config { return &gorm.Config{} }, simple: true},
	{name: "keep_delay_messages", cfg: func() *gorm.Config { return &gorm.Config{} }, keep: true},
}

// mysqlModes are the modes on MariaDB: each test that runs in every mode
// runs on both databases (allModes).
var mysqlModes = []mode{
	{name: "mysql", cfg: func() *gorm.Config { return &gorm.Config{} }, mysql: true},
	{name: "mysql_skip_default_tx", cfg: func() *gorm.Config { return &gorm.Config{SkipDefaultTransaction: true} }, mysql: true},
	{name: "mysql_prepare_stmt", cfg: func() *gorm.Config { return &gorm.Config{PrepareStmt: true} }, mysql: true},
	{name: "mysql_prepare_stmt_skip_default_tx", cfg: func() *gorm.Config {
		return &gorm.Config{PrepareStmt: true, SkipDefaultTransaction: true}
	}, mysql: true},
	{name: "mysql_plugins_config_prepare_stmt", cfg: func() *gorm.Config { return &gorm.Config{PrepareStmt: true} }, viaConfig: true, mysql: true},
	{name: "mysql_interpolate_params", cfg: func() *gorm.Config { return &gorm.Config{} }, simple: true, mysql: true},
	{name: "mysql_keep_delay_messages", cfg: func() *gorm.Config { return &gorm.Config{} }, keep: true, mysql: true},
}

// allModes are the PostgreSQL modes, then the MariaDB ones.
var allModes = append(slices.Clone(modes), mysqlModes...)

// newEnv opens a database in a fresh schema with the plugin registered, and
// a producer in a fresh namespace. adjust, if not nil, may replace the
// producer's Redis client (for fault injection).
func newEnv(t testing.TB, m mode, models ...any) *env {
	t.Helper()
	rdb, ns := testenv.Redis(t)
	return newEnvWith(t, m, rdb, ns, models...)
}

func newEnvWith(t testing.TB, m mode, rdb *redis.Client, ns string, models ...any) *env {
	t.Helper()
	logs := &logBuffer{}
	p := mustProducer(rdb, &redstream.ProducerOptions{
		Namespace:         ns,
		Logger:            slog.New(slog.NewTextHandler(logs, nil)),
		KeepDelayMessages: m.keep,
	})
	pl := redstream.NewPlugin(p, models...)
	cfg := m.cfg()
	cfg.Logger = logger.Discard
	if m.viaConfig {
		cfg.Plugins = map[string]gorm.Plugin{pl.Name(): pl}
	}
	var (
		dsn       string
		dialector gorm.Dialector
	)
	if m.mysql {
		dsn = testenv.MySQLDatabase(t)
		if m.simple {
			dsn += "&interpolateParams=true"
		}
		dialector = gormmysql.Open(dsn)
	} else {
		dsn = testenv.Schema(t)
		dialector = postgres.New(postgres.Config{DSN: dsn, PreferSimpleProtocol: m.simple})
	}
	db, err := gorm.Open(dialector, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatalf("db: %v", err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	if !m.viaConfig {
		if err := db.Use(pl); err != nil {
			t.Fatalf("use: %v", err)
		}
	}
	if err := db.AutoMigrate(&Product{}); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return &env{db: db, rdb: rdb, p: p, keys: p.Keys(), dsn: dsn, logs: logs, keep: m.keep, mysql: m.mysql}
}

// payloads returns the payloads in the stream at key, in order.
func payloads(t testing.TB, rdb redis.Cmdable, key string) []string {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatalf("xrange %s: %v", key, err)
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if len(m.Values) != 1 {
			t.Errorf("%s %s has fields %v, want only payload", key, m.ID, m.Values)
		}
		s, _ := m.Values["payload"].(string)
		out = append(out, s)
	}
	return out
}

// ids formats the default payloads of ids.
func ids(ids ...int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = `{"id":` + itoa(id) + `}`
	}
	return out
}

func itoa(i int) string {
	b := []byte{}
	if i == 0 {
		return "0"
	}
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// want checks the payloads of a stream's delay and main streams, ignoring
// order: delay lists every delay message the producer wrote, main every
// main-stream message. Unless the producer keeps delay messages, a delay
// message is deleted with its main-stream message, so the delay stream
// must hold only those without one (delay minus main, as multisets).
func (e *env) want(t testing.TB, stream string, delay, main []string) {
	t.Helper()
	if !e.keep {
		delay = unconfirmed(delay, main)
	}
	gotDelay := payloads(t, e.rdb, e.keys.Delay(stream))
	gotMain := payloads(t, e.rdb, e.keys.Stream(stream))
	if !sameSet(gotDelay, delay) {
		t.Errorf("delay stream %s = %v, want %v", stream, gotDelay, delay)
	}
	if !sameSet(gotMain, main) {
		t.Errorf("main stream %s = %v, want %v", stream, gotMain, main)
	}
}

// unconfirmed returns delay less one occurrence of each element of main.
func unconfirmed(delay, main []string) []string {
	left := map[string]int{}
	for _, m := range main {
		left[m]++
	}
	var out []string
	for _, d := range delay {
		if left[d] > 0 {
			left[d]--
			continue
		}
		out = append(out, d)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mustProducer returns a producer, or panics on options the test got wrong.
func mustProducer(rdb redis.UniversalClient, opts *redstream.ProducerOptions) *redstream.Producer {
	p, err := redstream.NewProducer(rdb, opts)
	if err != nil {
		panic(err)
	}
	return p
}

// publishAckSrc and publishAckSHA are the producer's main-stream script
// and its SHA-1, by which hooks recognise its EVAL and EVALSHA.
var publishAckSrc, publishAckSHA = func() (string, string) {
	src, err := os.ReadFile("publish_ack.lua")
	if err != nil {
		panic(err)
	}
	sum := sha1.Sum(src)
	return string(src), hex.EncodeToString(sum[:])
}()

// mainStreamWrite returns the stream key a producer command writes
// messages to: XADD's key, or KEYS[1] of the producer's main-stream
// script; "" for other commands.
func mainStreamWrite(cmd redis.Cmder) string {
	key, _ := streamWrite(cmd)
	return key
}

// streamWrite returns the stream key and the payloads a producer command
// writes: an XADD, or the producer's main-stream script (whose ARGV are
// the count n, n payloads, then the delay ids it deletes).
func streamWrite(cmd redis.Cmder) (string, []string) {
	args := cmd.Args()
	if len(args) < 2 {
		return "", nil
	}
	switch fmt.Sprint(args[0]) {
	case "xadd":
		return fmt.Sprint(args[1]), []string{fmt.Sprint(args[len(args)-1])}
	case "evalsha", "eval":
		s := fmt.Sprint(args[1])
		if len(args) < 6 || (s != publishAckSHA && s != publishAckSrc) {
			return "", nil
		}
		n, err := strconv.Atoi(fmt.Sprint(args[5]))
		if err != nil || len(args) < 6+n {
			return "", nil
		}
		var payloads []string
		for _, a := range args[6 : 6+n] {
			payloads = append(payloads, fmt.Sprint(a))
		}
		return fmt.Sprint(args[3]), payloads
	}
	return "", nil
}
