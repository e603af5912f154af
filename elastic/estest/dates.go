package estest

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var strictDateOptionalTime = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(?:(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$`)

var lenientDateOptionalTime = regexp.MustCompile(`^(\d{1,9})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](?:(\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,9}))?)?)?)?(Z|[+-]\d{1,2}(?::?\d{2})?)?)?)?)?$`)

// parseDateFormats parses s with a "||"-separated list of date formats
// (named formats and simple Java patterns) and returns epoch milliseconds.
// During dynamic date detection numbers are never dates.
func parseDateFormats(s, formats string, detection bool) (int64, bool) {
	for {
		f, rest, more := strings.Cut(formats, "||")
		if ms, ok := parseDate(s, strings.TrimSpace(f), detection); ok {
			return ms, true
		}
		if !more {
			return 0, false
		}
		formats = rest
	}
}

func parseDate(s, format string, detection bool) (int64, bool) {
	switch format {
	case "strict_date_optional_time", "strict_date_optional_time_nanos":
		if d, ok := scanStrictISO(s); ok {
			return d.epochMillis()
		}
		return parseISO(s, strictDateOptionalTime)
	case "date_optional_time", "dateOptionalTime":
		return parseISO(s, lenientDateOptionalTime)
	case "epoch_millis":
		if detection {
			return 0, false
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || strings.ContainsAny(s, "eE") || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, false
		}
		return int64(f), true
	case "epoch_second":
		if detection {
			return 0, false
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || strings.ContainsAny(s, "eE") {
			return 0, false
		}
		return int64(f * 1000), true
	case "strict_date", "date", "yyyy-MM-dd":
		return parseLayout(s, "2006-01-02")
	case "strict_date_time", "date_time":
		if ms, ok := parseLayout(s, "2006-01-02T15:04:05.000Z07:00"); ok {
			return ms, true
		}
		return parseLayout(s, "2006-01-02T15:04:05.000Z0700")
	case "strict_date_time_no_millis", "date_time_no_millis":
		return parseLayout(s, "2006-01-02T15:04:05Z07:00")
	case "basic_date":
		return parseLayout(s, "20060102")
	case "strict_date_hour_minute_second", "date_hour_minute_second":
		return parseLayout(s, "2006-01-02T15:04:05")
	}
	layout, ok := javaPatternToLayout(format)
	if !ok {
		return 0, false
	}
	if ms, ok := parseLayout(s, layout); ok {
		return ms, true
	}
	// The default dynamic formats ("yyyy/MM/dd HH:mm:ss Z||yyyy/MM/dd Z")
	// also detect values without a zone, like "2015/09/02".
	if strings.HasSuffix(format, " Z") {
		return parseDate(s, strings.TrimSuffix(format, " Z"), detection)
	}
	return 0, false
}

func parseLayout(s, layout string) (int64, bool) {
	t, err := time.Parse(layout, s)
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}

func parseISO(s string, re *regexp.Regexp) (int64, bool) {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	num := func(i, def int) int {
		if m[i] == "" {
			return def
		}
		n, _ := strconv.Atoi(m[i])
		return n
	}
	d := isoDate{
		year: num(1, 0), month: num(2, 1), day: num(3, 1),
		hour: num(4, 0), minute: num(5, 0), sec: num(6, 0),
	}
	if m[7] != "" {
		frac := m[7] + strings.Repeat("0", 9-len(m[7]))
		d.nanos, _ = strconv.Atoi(frac)
	}
	if z := m[8]; z != "" && z != "Z" {
		d.offSign = 1
		if z[0] == '-' {
			d.offSign = -1
		}
		z = strings.ReplaceAll(z[1:], ":", "")
		d.offHour, _ = strconv.Atoi(z[:2])
		if len(z) >= 4 {
			d.offMin, _ = strconv.Atoi(z[2:4])
		}
	}
	return d.epochMillis()
}

// isoDate holds the fields of an ISO 8601 date-time as written, before
// range checks.
type isoDate struct {
	year, month, day  int
	hour, minute, sec int
	nanos             int
	offSign           int // 0: UTC (no zone or Z), else ±1
	offHour, offMin   int
}

func (d *isoDate) epochMillis() (int64, bool) {
	if d.month < 1 || d.month > 12 || d.day < 1 || d.day > daysIn(d.year, d.month) || d.hour > 23 || d.minute > 59 || d.sec > 59 {
		return 0, false
	}
	off := 0
	if d.offSign != 0 {
		if d.offHour > 18 || d.offMin > 59 {
			return 0, false
		}
		off = d.offSign * (d.offHour*3600 + d.offMin*60)
	}
	// A fixed zone shifts the instant by whole seconds, so the UTC reading
	// minus the offset is the same instant time.FixedZone would give.
	t := time.Date(d.year, time.Month(d.month), d.day, d.hour, d.minute, d.sec, d.nanos, time.UTC)
	return t.UnixMilli() - int64(off)*1000, true
}

// scanStrictISO reads the strict_date_optional_time shape
// (strictDateOptionalTime) without a regular expression. It reports false
// for any input it does not match; those go through the regular expression.
func scanStrictISO(s string) (isoDate, bool) {
	d := isoDate{month: 1, day: 1}
	i := 0
	digits := func(n int) (int, bool) {
		if i+n > len(s) {
			return 0, false
		}
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		i += n
		return v, true
	}
	var ok bool
	if d.year, ok = digits(4); !ok {
		return d, false
	}
	if i == len(s) {
		return d, true
	}
	if s[i] != '-' {
		return d, false
	}
	i++
	if d.month, ok = digits(2); !ok {
		return d, false
	}
	if i == len(s) {
		return d, true
	}
	if s[i] != '-' {
		return d, false
	}
	i++
	if d.day, ok = digits(2); !ok {
		return d, false
	}
	if i == len(s) {
		return d, true
	}
	if s[i] != 'T' {
		return d, false
	}
	i++
	// optional HH[:mm[:ss[.f]]]
	if i < len(s) && s[i] >= '0' && s[i] <= '9' {
		if d.hour, ok = digits(2); !ok {
			return d, false
		}
		if i+1 < len(s) && s[i] == ':' && s[i+1] >= '0' && s[i+1] <= '9' {
			i++
			if d.minute, ok = digits(2); !ok {
				return d, false
			}
			if i+1 < len(s) && s[i] == ':' && s[i+1] >= '0' && s[i+1] <= '9' {
				i++
				if d.sec, ok = digits(2); !ok {
					return d, false
				}
				if i+1 < len(s) && (s[i] == '.' || s[i] == ',') && s[i+1] >= '0' && s[i+1] <= '9' {
					i++
					n := 0
					for i < len(s) && s[i] >= '0' && s[i] <= '9' {
						if n == 9 {
							return d, false
						}
						d.nanos = d.nanos*10 + int(s[i]-'0')
						i++
						n++
					}
					for ; n < 9; n++ {
						d.nanos *= 10
					}
				}
			}
		}
	}
	if i == len(s) {
		return d, true
	}
	switch s[i] {
	case 'Z':
		i++
	case '+', '-':
		d.offSign = 1
		if s[i] == '-' {
			d.offSign = -1
		}
		i++
		if d.offHour, ok = digits(2); !ok {
			return d, false
		}
		if i < len(s) {
			if s[i] == ':' {
				i++
			}
			if d.offMin, ok = digits(2); !ok {
				return d, false
			}
		}
	default:
		return d, false
	}
	return d, i == len(s)
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// javaPatternToLayout converts simple DateTimeFormatter patterns to Go layouts.
func javaPatternToLayout(p string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(p); {
		c := p[i]
		if c == '\'' {
			j := strings.IndexByte(p[i+1:], '\'')
			if j < 0 {
				return "", false
			}
			b.WriteString(p[i+1 : i+1+j])
			i += j + 2
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			b.WriteByte(c)
			i++
			continue
		}
		n := 1
		for i+n < len(p) && p[i+n] == c {
			n++
		}
		i += n
		var l string
		switch c {
		case 'y', 'u':
			if n == 2 {
				l = "06"
			} else {
				l = "2006"
			}
		case 'M':
			switch n {
			case 1:
				l = "1"
			case 2:
				l = "01"
			case 3:
				l = "Jan"
			default:
				l = "January"
			}
		case 'd':
			if n == 1 {
				l = "2"
			} else {
				l = "02"
			}
		case 'H':
			l = "15"
		case 'h':
			if n == 1 {
				l = "3"
			} else {
				l = "03"
			}
		case 'm':
			if n == 1 {
				l = "4"
			} else {
				l = "04"
			}
		case 's':
			if n == 1 {
				l = "5"
			} else {
				l = "05"
			}
		case 'S':
			l = strings.Repeat("0", n)
		case 'a':
			l = "PM"
		case 'E':
			if n >= 4 {
				l = "Monday"
			} else {
				l = "Mon"
			}
		case 'Z':
			l = "-0700"
		case 'X', 'x':
			switch n {
			case 1:
				l = "Z07"
			case 2:
				l = "Z0700"
			default:
				l = "Z07:00"
			}
		default:
			return "", false
		}
		b.WriteString(l)
	}
	return b.String(), true
}
