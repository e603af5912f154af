package estest

import (
	"math/rand"
	"testing"
	"time"
)

// TestScanStrictISOAgreesWithRegexp checks the strict_date_optional_time
// fast path against the regular expression it stands in for.
func TestScanStrictISOAgreesWithRegexp(t *testing.T) {
	inputs := []string{
		"2026", "2026-11", "2026-11-23", "2026-11-23T", "2026-11-23T12", "2026-11-23T12:00",
		"2026-11-23T12:00:00", "2026-11-23T12:00:00Z", "2026-11-23T12:00:00.1", "2026-11-23T12:00:00.12",
		"2026-11-23T12:00:00.123", "2026-11-23T12:00:00.1234", "2026-11-23T12:00:00.12345",
		"2026-11-23T12:00:00.123456", "2026-11-23T12:00:00.1234567", "2026-11-23T12:00:00.12345678",
		"2026-11-23T12:00:00.123456789", "2026-11-23T12:00:00.1234567891", "2026-11-23T12:00:00,5Z",
		"2026-11-23T12:00:00.123456+00:00", "2026-11-23T12:00:00.123456-00:00", "2026-11-23T12:00:00+05:30",
		"2026-11-23T12:00:00-05:30", "2026-11-23T12:00:00+0530", "2026-11-23T12:00:00+05", "2026-11-23T12:00:00-18:00",
		"2026-11-23T12:00:00+18:59", "2026-11-23T12:00:00+19:00", "2026-11-23T12:00:00+05:60", "2026-11-23T12:00:00+05:",
		"2026-11-23T12:00:00+5", "2026-11-23T12:00:00+053", "2026-11-23T12:00:00+05:3", "2026-11-23T12:00:00+05:300",
		"2026-11-23TZ", "2026-11-23T+01:00", "2026-11-23T12Z", "2026-11-23T12:30-01", "2026-11-23T12:", "2026-11-23T12:0",
		"2026-11-23T12:00:", "2026-11-23T12:00:0", "2026-11-23T12:00:00.", "2026-11-23T12:00:00.Z", "2026-11-23T12:00:00Zx",
		"2026-11-23Z", "2026-11-23 12:00:00", "2026-11-23t12:00:00", "2026-11-23T12:00:00z",
		"2026-00-01", "2026-13-01", "2026-01-00", "2026-01-32", "2026-04-31", "2026-02-29", "2024-02-29", "2000-02-29",
		"1900-02-29", "2026-02-28", "0000-01-01", "9999-12-31T23:59:59.999999999Z", "2026-11-23T24:00:00",
		"2026-11-23T23:60:00", "2026-11-23T23:59:60", "1969-12-31T23:59:59.9995Z", "1970-01-01T00:00:00.0001-00:01",
		"202", "20261", "2026-1-01", "2026-01-1", "2026/01/01", "", "-2026", "+2026-01-01", "2026-11-23T12:00:00.123456+00:00 ",
		" 2026", "２０２６", "2026-11-23T12:00:00\n", "abcd", "2026-ab", "12345678",
	}
	rng := rand.New(rand.NewSource(1))
	const alphabet = "0123456789-T:.,Z+ "
	base := "2024-02-29T23:59:59.123456789+05:30"
	for range 20000 {
		b := []byte(base[:rng.Intn(len(base)+1)])
		for range rng.Intn(3) {
			if len(b) > 0 {
				b[rng.Intn(len(b))] = alphabet[rng.Intn(len(alphabet))]
			}
		}
		inputs = append(inputs, string(b))
	}
	for _, s := range inputs {
		wantMS, wantOK := parseISO(s, strictDateOptionalTime)
		var gotMS int64
		d, matched := scanStrictISO(s)
		gotOK := matched
		if matched {
			gotMS, gotOK = d.epochMillis()
		}
		if matched != (strictDateOptionalTime.MatchString(s)) {
			t.Errorf("%q: fast path match %v, regexp match %v", s, matched, !matched)
		}
		if gotOK != wantOK || gotMS != wantMS {
			t.Errorf("%q: fast path (%d, %v), regexp (%d, %v)", s, gotMS, gotOK, wantMS, wantOK)
		}
		if matched && gotOK {
			loc := time.FixedZone("", d.offSign*(d.offHour*3600+d.offMin*60))
			ref := time.Date(d.year, time.Month(d.month), d.day, d.hour, d.minute, d.sec, d.nanos, loc).UnixMilli()
			if ref != gotMS {
				t.Errorf("%q: %d, time.FixedZone gives %d", s, gotMS, ref)
			}
		}
		if ms, ok := parseDate(s, "strict_date_optional_time", false); ok != wantOK || ms != wantMS {
			t.Errorf("%q: parseDate (%d, %v), regexp (%d, %v)", s, ms, ok, wantMS, wantOK)
		}
	}
}
