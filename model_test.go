package redstream_test

import (
	"context"
	"hash/crc32"
	"slices"
	"testing"

	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
)

func TestKeysLayout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ got, want string }{
		{redstream.NewKeys("").Stream("products"), "redstream:stream:products"},
		{redstream.NewKeys("").Delay("products"), "redstream:stream:products.delay"},
		{redstream.NewKeys("app").Stream("products"), "app:redstream:stream:products"},
		{redstream.NewKeys("app").Delay("products"), "app:redstream:stream:products.delay"},
		{redstream.NewKeys("app").Offset("products", "indexer"), "app:redstream:offset:products:indexer"},
		{redstream.NewKeys("app").Offset(redstream.DelayStream("products"), redstream.DelayerName), "app:redstream:offset:products.delay:delayer"},
		{redstream.NewKeys("app").Lock(redstream.ConsumerLockName("products", "indexer")), "app:redstream:lock:consumer:products:indexer"},
		{redstream.NewKeys("app").Lock(redstream.ConsumerLockName(redstream.DelayStream("products"), redstream.DelayerName)), "app:redstream:lock:consumer:products.delay:delayer"},
		{redstream.NewKeys("app").Lock(redstream.TrimmerLockName("products")), "app:redstream:lock:trimmer:products"},
		{redstream.NewKeys("app").Notify(redstream.TrimmerLockName("products")), "app:redstream:lock:trimmer:products.notify"},
		{redstream.NewKeys("app").DeadLetter("products", "indexer"), "app:redstream:dlq:products:indexer"},
		{redstream.NewKeys("").Stream("{products}"), "redstream:stream:{products}"},
		{redstream.NewKeys("app").Backfill("products", "products_v2"), "app:redstream:backfill:products:products_v2"},
	} {
		if tc.got != tc.want {
			t.Errorf("key = %q, want %q", tc.got, tc.want)
		}
	}
}

func TestShardName(t *testing.T) {
	t.Parallel()
	// Zlib.crc32("1") is 2212294583 in Ruby; 2212294583 % 4 == 3.
	if got := crc32.ChecksumIEEE([]byte("1")); got != 2212294583 {
		t.Fatalf("crc32(1) = %d", got)
	}
	for _, tc := range []struct {
		id     any
		shards int
		want   string
	}{
		{int64(1), 4, "products-3"},
		{1, 4, "products-3"},
		{"1", 4, "products-3"},
		{uint8(1), 4, "products-3"},
		{int64(1), 1, "products"},
		{int64(1), 0, "products"},
	} {
		if got := redstream.ShardName("products", tc.id, tc.shards); got != tc.want {
			t.Errorf("ShardName(%v, %d) = %q, want %q", tc.id, tc.shards, got, tc.want)
		}
	}
	// Every shard is reachable and a key always lands in the same one.
	seen := map[string]bool{}
	for id := range 100 {
		a, b := redstream.ShardName("p", id, 4), redstream.ShardName("p", id, 4)
		if a != b {
			t.Fatalf("unstable shard for %d", id)
		}
		seen[a] = true
	}
	if len(seen) != 4 {
		t.Errorf("shards used = %v, want 4", seen)
	}
}

// TestShardNames lists exactly the names ShardName spreads keys over.
func TestShardNames(t *testing.T) {
	t.Parallel()
	if got := redstream.ShardNames("p", 1); !slices.Equal(got, []string{"p"}) {
		t.Errorf("ShardNames(p, 1) = %v", got)
	}
	braced := redstream.ShardNames("{p}", 3)
	if want := []string{"{p-0}", "{p-1}", "{p-2}"}; !slices.Equal(braced, want) {
		t.Fatalf("ShardNames({p}, 3) = %v, want %v", braced, want)
	}
	if got := redstream.ShardName("{p}", 1, 4); got != "{p-3}" {
		t.Errorf("ShardName({p}, 1, 4) = %q, want {p-3}", got)
	}
	names := redstream.ShardNames("p", 4)
	if want := []string{"p-0", "p-1", "p-2", "p-3"}; !slices.Equal(names, want) {
		t.Fatalf("ShardNames(p, 4) = %v, want %v", names, want)
	}
	for id := range 100 {
		if s := redstream.ShardName("p", id, 4); !slices.Contains(names, s) {
			t.Fatalf("ShardName(p, %d, 4) = %q, not among %v", id, s, names)
		}
	}
}

// Doc has a string (UUID) primary key.
type Doc struct {
	ID    string `gorm:"primaryKey;type:uuid;default:gen_random_uuid()"`
	Title string
}

// Pair has a composite primary key.
type Pair struct {
	A     int64  `gorm:"primaryKey;autoIncrement:false"`
	B     string `gorm:"primaryKey"`
	Value int
}

// Sharded chooses its stream and payload.
type Sharded struct {
	ID    int64
	Title string
}

func (s *Sharded) RedstreamName() string { return redstream.ShardName("sharded", s.ID, 2) }
func (s *Sharded) RedstreamPayload() any {
	return map[string]any{"id": s.ID, "kind": "<sharded & escaped?>"}
}

func TestPluginKeyTypes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, modes[0])
	must(t, e.db.AutoMigrate(&Doc{}, &Pair{}, &Sharded{}))

	d := Doc{Title: "uuid"}
	must(t, e.db.Create(&d).Error)
	if d.ID == "" {
		t.Fatal("no uuid returned")
	}
	must(t, e.db.Delete(&d).Error)
	want := []string{`{"id":"` + d.ID + `"}`, `{"id":"` + d.ID + `"}`}
	e.want(t, "docs", want, want)

	p := Pair{A: 7, B: "x"}
	must(t, e.db.Create(&p).Error)
	must(t, e.db.Model(&p).Update("value", 3).Error)
	must(t, e.db.Delete(&p).Error)
	want = []string{`{"id":[7,"x"]}`, `{"id":[7,"x"]}`, `{"id":[7,"x"]}`}
	e.want(t, "pairs", want, want)

	must(t, e.db.Create(&[]Sharded{{ID: 1}, {ID: 2}, {ID: 3}}).Error)
	must(t, e.db.Delete(&Sharded{}, 3).Error) // keys from the condition still reach Namer and Payloader
	streams := map[string][]string{}
	for _, id := range []int64{1, 2, 3, 3} {
		name := redstream.ShardName("sharded", id, 2)
		streams[name] = append(streams[name], `{"id":`+itoa(int(id))+`,"kind":"<sharded & escaped?>"}`)
	}
	for name, want := range streams {
		e.want(t, name, want, want)
	}
}

func TestPluginModelsFilter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, modes[0], &Doc{})
	must(t, e.db.AutoMigrate(&Doc{}))
	must(t, e.db.Create(&Product{Title: "untracked"}).Error)
	must(t, e.db.Create(&Doc{Title: "tracked"}).Error)
	e.want(t, "products", nil, nil)
	if n := e.rdb.XLen(context.Background(), e.keys.Stream("docs")).Val(); n != 1 {
		t.Errorf("docs messages = %d, want 1", n)
	}
}

// Parent and Child have a deferred foreign key, checked at COMMIT.
type Parent struct{ ID int64 }

type Child struct {
	ID       int64
	ParentID int64
}

func TestPluginCommitFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, modes[0])
	must(t, e.db.AutoMigrate(&Parent{}, &Child{}))
	must(t, e.db.Exec(`ALTER TABLE children ADD CONSTRAINT fk_parent FOREIGN KEY (parent_id)
		REFERENCES parents(id) DEFERRABLE INITIALLY DEFERRED`).Error)
	err := e.db.Transaction(func(tx *gorm.DB) error {
		return tx.Create(&Child{ParentID: 42}).Error
	})
	if err == nil {
		t.Fatal("commit with a broken deferred foreign key succeeded")
	}
	// The COMMIT failed after the delay write: no main-stream message.
	e.want(t, "children", ids(1), nil)
}

// Author has many Posts: association writes are separate statements, each
// captured with its own model.
type Author struct {
	ID    int64
	Name  string
	Posts []Post
}

type Post struct {
	ID       int64
	AuthorID *int64
	Title    string
}

func TestPluginAssociationsAndGenerics(t *testing.T) {
	t.Parallel()
	for _, m := range []mode{modes[0], modes[1], mysqlModes[0], mysqlModes[1]} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			must(t, e.db.AutoMigrate(&Author{}, &Post{}))
			a := Author{Name: "a", Posts: []Post{{Title: "p1"}, {Title: "p2"}}}
			must(t, e.db.Create(&a).Error) // GORM upserts the posts with SkipHooks set
			e.want(t, "authors", ids(1), ids(1))
			e.want(t, "posts", ids(1, 2), ids(1, 2))

			must(t, e.db.Model(&a).Association("Posts").Append(&Post{Title: "p3"}))
			e.want(t, "posts", ids(1, 2, 1, 2, 3), ids(1, 2, 1, 2, 3))

			// Generics: a create by value is captured, an update by a raw
			// condition is reported.
			ctx := context.Background()
			p := Product{Title: "generic"}
			must(t, gorm.G[Product](e.db).Create(ctx, &p))
			if _, err := gorm.G[Product](e.db).Where("id = ?", p.ID).Update(ctx, "price", 3); err != nil {
				t.Fatal(err)
			}
			e.want(t, "products", ids(1), ids(1))
			if got := e.p.Stats().Uncaptured; got != 1 {
				t.Errorf("Uncaptured = %d, want 1", got)
			}
		})
	}
}
