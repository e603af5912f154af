package redstream_test

import (
	"testing"

	"gorm.io/gorm/clause"
)

// Code has a string primary key the application assigns, as MySQL
// tables often do (MySQL has no gen_random_uuid() default).
type Code struct {
	Code  string `gorm:"primaryKey;size:32"`
	Label string
}

// TestPluginMySQLKeys: string and composite keys on MariaDB, by value, by
// key condition and through ON DUPLICATE KEY UPDATE, whose RowsAffected
// of 2 for an updated row (1 on MariaDB, which reads the row back with
// RETURNING) still captures the record once.
func TestPluginMySQLKeys(t *testing.T) {
	t.Parallel()
	for _, m := range mysqlModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			must(t, e.db.AutoMigrate(&Code{}, &Pair{}))

			must(t, e.db.Create(&[]Code{{Code: "a-1", Label: "x"}, {Code: "b\"2", Label: "y"}}).Error)
			must(t, e.db.Model(&Code{}).Where(map[string]any{"code": []string{"a-1", "b\"2"}}).Update("label", "z").Error)
			res := e.db.Clauses(clause.OnConflict{UpdateAll: true}).Create(&Code{Code: "a-1", Label: "upserted"})
			must(t, res.Error)
			if res.RowsAffected == 0 {
				t.Fatalf("upsert of a changed row: RowsAffected 0")
			}
			must(t, e.db.Save(&Code{Code: "c", Label: "saved"}).Error) // Save of a missing row inserts it
			must(t, e.db.Delete(&Code{}, "code = ?", "c").Error)       // a raw condition: not captured
			must(t, e.db.Delete(&Code{Code: "b\"2"}).Error)
			a, b, c := `{"id":"a-1"}`, `{"id":"b\"2"}`, `{"id":"c"}`
			want := []string{a, b, a, b, a, c, b}
			e.want(t, "codes", want, want)
			if got := e.p.Stats().Uncaptured; got != 1 {
				t.Errorf("Uncaptured = %d, want 1 (the delete by a raw condition)", got)
			}

			p := Pair{A: 7, B: "x"}
			must(t, e.db.Create(&p).Error)
			must(t, e.db.Model(&p).Update("value", 3).Error)
			must(t, e.db.Clauses(clause.OnConflict{UpdateAll: true}).Create(&Pair{A: 7, B: "x", Value: 4}).Error)
			must(t, e.db.Delete(&p).Error)
			pw := `{"id":[7,"x"]}`
			e.want(t, "pairs", []string{pw, pw, pw, pw}, []string{pw, pw, pw, pw})
			var n int64
			must(t, e.db.Model(&Pair{}).Count(&n).Error)
			if n != 0 {
				t.Errorf("pairs left = %d, want 0", n)
			}
		})
	}
}
