package redstream_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// killChildEnv makes the test binary run killChild instead of the tests;
// its value is "<dsn> <namespace>".
const killChildEnv = "REDSTREAM_KILL_CHILD"

// killChild commits one row through the plugin and kills itself with
// SIGKILL at the moment the plugin starts its main-stream write: after
// COMMIT, before anything of the publish reaches Redis.
func killChild() {
	var dsn, ns string
	if _, err := fmt.Sscan(os.Getenv(killChildEnv), &dsn, &ns); err != nil {
		panic(err)
	}
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(opts)
	rdb.AddHook(killHook{})
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	if err := db.Use(redstream.NewPlugin(p)); err != nil {
		panic(err)
	}
	err = db.Create(&Product{ID: 7, Title: "committed"}).Error
	panic(fmt.Sprintf("still alive after the commit: %v", err))
}

// killHook kills the process before it sends a main-stream write.
type killHook struct{}

func (killHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (killHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if key := mainStreamWrite(cmd); key != "" && cmd.Args()[0] != "xadd" {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal ends the process
		}
		return next(ctx, cmd)
	}
}

func (h killHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestKilledBeforePublish kills an application process with SIGKILL
// between its COMMIT and its main-stream write: the row is committed, only
// its delay message is in Redis, and the Delayer delivers the change.
func TestKilledBeforePublish(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	dsn := testenv.Schema(t)
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	must(t, err)
	must(t, db.AutoMigrate(&Product{}))
	if sqlDB, err := db.DB(); err == nil {
		t.Cleanup(func() { sqlDB.Close() })
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dsn+" "+ns)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want killed by SIGKILL\n%s", err, out)
	}

	var title string
	must(t, db.Raw("SELECT title FROM products WHERE id = 7").Scan(&title).Error)
	if title != "committed" {
		t.Fatalf("row 7 = %q, want the committed row", title)
	}
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	if got := payloads(t, rdb, keys.Delay("products")); !sameSet(got, ids(7)) {
		t.Fatalf("delay stream = %v, want the killed commit's message", got)
	}
	if n := rdb.XLen(ctx, keys.Stream("products")).Val(); n != 0 {
		t.Fatalf("main stream has %d entries, want none (killed before the publish)", n)
	}

	opts := fastDelayerOptions(ns)
	opts.Now = func() time.Time { return time.Now().Add(time.Hour) }
	d := newDelayer(t, rdb, "products", time.Minute, opts)
	start(t, d.Run)
	eventually(t, 5*time.Second, "the Delayer to deliver the change", func() bool {
		return rdb.XLen(ctx, keys.Stream("products")).Val() == 1
	})
	if got := payloads(t, rdb, keys.Stream("products")); !sameSet(got, ids(7)) {
		t.Fatalf("main stream = %v, want the change", got)
	}
}
