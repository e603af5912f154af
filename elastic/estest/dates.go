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
	for _, f := range strings.Split(formats, "||") {
		f = strings.TrimSpace(f)
		if ms, ok := parseDate(s, f, detection); ok {
			return ms, true
		}
	}
	return 0, false
}

func parseDate(s, format string, detection bool) (int64, bool) {
	switch format {
	case "strict_date_optional_time", "strict_date_optional_time_nanos":
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
	year, month, day := num(1, 0), num(2, 1), num(3, 1)
	hour, minute, sec := num(4, 0), num(5, 0), num(6, 0)
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	nanos := 0
	if m[7] != "" {
		frac := m[7] + strings.Repeat("0", 9-len(m[7]))
		nanos, _ = strconv.Atoi(frac)
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		sign := 1
		if z[0] == '-' {
			sign = -1
		}
		z = strings.ReplaceAll(z[1:], ":", "")
		h, _ := strconv.Atoi(z[:2])
		mm := 0
		if len(z) >= 4 {
			mm, _ = strconv.Atoi(z[2:4])
		}
		if h > 18 || mm > 59 {
			return 0, false
		}
		loc = time.FixedZone("", sign*(h*3600+mm*60))
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc)
	return t.UnixMilli(), true
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
