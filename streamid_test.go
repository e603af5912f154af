package redstream_test

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/redstream-go/redstream"
)

func TestIDParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want redstream.ID
		err  bool
	}{
		{in: "0-0", want: redstream.ID{}},
		{in: "1526919030474-55", want: redstream.ID{MS: 1526919030474, Seq: 55}},
		{in: "999-0", want: redstream.ID{MS: 999}},
		{in: "1000", want: redstream.ID{MS: 1000}},
		{in: "18446744073709551615-18446744073709551615", want: redstream.MaxID},
		{in: "", err: true},
		{in: "-", err: true},
		{in: "5-", err: true},
		{in: "-5", err: true},
		{in: "a-1", err: true},
		{in: "1-b", err: true},
		{in: "1-2-3", err: true},
		{in: "-1-0", err: true},
		{in: "18446744073709551616-0", err: true},
		{in: " 1-0", err: true},
	} {
		got, err := redstream.ParseID(tc.in)
		switch {
		case tc.err && err == nil:
			t.Errorf("ParseID(%q) = %v, want an error", tc.in, got)
		case tc.err && !errors.Is(err, redstream.ErrInvalidID):
			t.Errorf("ParseID(%q) error %v, want ErrInvalidID", tc.in, err)
		case !tc.err && err != nil:
			t.Errorf("ParseID(%q): %v", tc.in, err)
		case !tc.err && got != tc.want:
			t.Errorf("ParseID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestIDMustParsePanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("MustParseID(\"x\") did not panic")
		}
	}()
	redstream.MustParseID("x")
}

func TestIDCompare(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"999-0", "1000-0", -1},
		{"5-9", "5-10", -1},
		{"5-10", "5-9", 1},
		{"1000-0", "999-0", 1},
		{"0-0", "0-1", -1},
		{"7-7", "7-7", 0},
		{"9-99", "10-0", -1},
		{"18446744073709551615-0", "18446744073709551614-18446744073709551615", 1},
	} {
		a, b := redstream.MustParseID(tc.a), redstream.MustParseID(tc.b)
		if got := a.Compare(b); got != tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got, want := a.Less(b), tc.want < 0; got != want {
			t.Errorf("%s.Less(%s) = %v, want %v", tc.a, tc.b, got, want)
		}
	}
}

func TestIDNext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   redstream.ID
		want redstream.ID
	}{
		{redstream.ID{}, redstream.ID{Seq: 1}},
		{redstream.MustParseID("5-9"), redstream.MustParseID("5-10")},
		{redstream.ID{MS: 5, Seq: math.MaxUint64}, redstream.ID{MS: 6}},
		{redstream.MaxID, redstream.MaxID},
	} {
		if got := tc.in.Next(); got != tc.want {
			t.Errorf("%v.Next() = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestIDString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"0-0", "999-0", "1000-12", "18446744073709551615-18446744073709551615"} {
		if got := redstream.MustParseID(s).String(); got != s {
			t.Errorf("String() = %q, want %q", got, s)
		}
	}
	if !(redstream.ID{}).IsZero() || redstream.MustParseID("0-1").IsZero() {
		t.Error("IsZero is wrong")
	}
	if got, want := redstream.MustParseID("1700000000123-4").Time(), time.UnixMilli(1700000000123); !got.Equal(want) {
		t.Errorf("Time() = %v, want %v", got, want)
	}
	if got := redstream.MaxID.Time(); got.Before(time.UnixMilli(1 << 62)) {
		t.Errorf("MaxID.Time() = %v, want a far future", got)
	}
}

func TestIDText(t *testing.T) {
	t.Parallel()
	type doc struct {
		Offset redstream.ID            `json:"offset"`
		ByID   map[redstream.ID]string `json:"by_id"`
	}
	in := doc{Offset: redstream.MustParseID("1000-9"), ByID: map[redstream.ID]string{redstream.MustParseID("5-10"): "x"}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"offset":"1000-9","by_id":{"5-10":"x"}}`; got != want {
		t.Fatalf("Marshal = %s, want %s", got, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Offset != in.Offset || out.ByID[redstream.MustParseID("5-10")] != "x" {
		t.Fatalf("Unmarshal = %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"offset":"nope"}`), &out); !errors.Is(err, redstream.ErrInvalidID) {
		t.Fatalf("Unmarshal of an invalid id: %v, want ErrInvalidID", err)
	}
}
