package estest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// The server keeps JSON as ordered trees so that responses come out with the
// field order Elasticsearch uses, partial updates keep the source's key order,
// and document parsing errors can name the [line:column] of the offending
// value the way Elasticsearch's Jackson-based parser does.

// pos is a 1-based line and column, columns counted in bytes like Jackson
// does for byte input.
type pos struct{ line, col int }

func (p pos) String() string { return fmt.Sprintf("[%d:%d]", p.line, p.col) }

// member is one field of a JSON object.
type member struct {
	Key string
	Val any
	Pos pos // position of the value
}

// object is an ordered JSON object.
type object struct {
	M   []member
	End pos // position of the closing brace, for parse error locations
}

// array is a JSON array with the positions of its elements.
type array struct {
	V []any
	P []pos
}

// obj builds an ordered object from key, value pairs.
func obj(kv ...any) *object {
	o := &object{M: make([]member, 0, len(kv)/2)}
	for i := 0; i+1 < len(kv); i += 2 {
		o.M = append(o.M, member{Key: kv[i].(string), Val: kv[i+1]})
	}
	return o
}

func (o *object) get(k string) (any, bool) {
	if o == nil {
		return nil, false
	}
	for i := range o.M {
		if o.M[i].Key == k {
			return o.M[i].Val, true
		}
	}
	return nil, false
}

func (o *object) member(k string) *member {
	if o == nil {
		return nil
	}
	for i := range o.M {
		if o.M[i].Key == k {
			return &o.M[i]
		}
	}
	return nil
}

func (o *object) set(k string, v any) {
	for i := range o.M {
		if o.M[i].Key == k {
			o.M[i].Val = v
			return
		}
	}
	o.M = append(o.M, member{Key: k, Val: v})
}

func (o *object) keys() []string {
	ks := make([]string, len(o.M))
	for i, m := range o.M {
		ks[i] = m.Key
	}
	return ks
}

// clone deep-copies a JSON tree.
func clone(v any) any {
	switch t := v.(type) {
	case *object:
		c := &object{M: make([]member, len(t.M))}
		for i, m := range t.M {
			c.M[i] = member{Key: m.Key, Val: clone(m.Val), Pos: m.Pos}
		}
		return c
	case *array:
		c := &array{V: make([]any, len(t.V)), P: append([]pos(nil), t.P...)}
		for i, e := range t.V {
			c.V[i] = clone(e)
		}
		return c
	default:
		return v
	}
}

// jsonEqual compares two JSON trees (object key order ignored).
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case *object:
		y, ok := b.(*object)
		if !ok || len(x.M) != len(y.M) {
			return false
		}
		for _, m := range x.M {
			v, ok := y.get(m.Key)
			if !ok || !jsonEqual(m.Val, v) {
				return false
			}
		}
		return true
	case *array:
		y, ok := b.(*array)
		if !ok || len(x.V) != len(y.V) {
			return false
		}
		for i := range x.V {
			if !jsonEqual(x.V[i], y.V[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		fx, e1 := strconv.ParseFloat(string(x), 64)
		fy, e2 := strconv.ParseFloat(string(y), 64)
		return e1 == nil && e2 == nil && fx == fy
	default:
		return a == b
	}
}

// parseError is a JSON syntax error, worded like Jackson's.
type parseError struct {
	pos pos
	msg string
}

func (e *parseError) Error() string { return e.pos.String() + " " + e.msg }

type parser struct {
	data      []byte
	src       string // data as a string, lazily made: strings are cut from it
	i         int
	line      int
	lineStart int
	members   []member // stack of the members of the objects being parsed
}

// text returns data[from:to] as a string. The first call converts the whole
// input once; the strings of a parse share that conversion.
func (p *parser) text(from, to int) string {
	if p.src == "" {
		p.src = string(p.data)
	}
	return p.src[from:to]
}

// parseJSON parses one JSON value. Trailing content other than whitespace is
// an error unless allowTrailing is set. An input holding only whitespace
// returns (nil, false, nil).
func parseJSON(data []byte, allowTrailing bool) (v any, ok bool, err error) {
	p := &parser{data: data, line: 1}
	if sp, ok := memberStacks.Get().(*[]member); ok {
		p.members = *sp
		defer func() {
			// The stack is empty again; drop what it referenced.
			clear(p.members[:cap(p.members)])
			if cap(p.members) <= 1024 {
				*sp = p.members[:0]
				memberStacks.Put(sp)
			}
		}()
	}
	p.skipWS()
	if p.i >= len(p.data) {
		return nil, false, nil
	}
	v, err = p.value(0)
	if err != nil {
		return nil, false, err
	}
	if !allowTrailing {
		p.skipWS()
		if p.i < len(p.data) {
			return nil, false, p.errf("Unexpected character (%s): expected end-of-input", p.describeChar())
		}
	}
	return v, true, nil
}

// newObject returns an object holding a copy of ms, allocated together with
// its members when there are few.
func newObject(ms []member) *object {
	switch len(ms) {
	case 1:
		x := &struct {
			o object
			m [1]member
		}{}
		copy(x.m[:], ms)
		x.o.M = x.m[:]
		return &x.o
	case 2:
		x := &struct {
			o object
			m [2]member
		}{}
		copy(x.m[:], ms)
		x.o.M = x.m[:]
		return &x.o
	case 3:
		x := &struct {
			o object
			m [3]member
		}{}
		copy(x.m[:], ms)
		x.o.M = x.m[:]
		return &x.o
	case 4:
		x := &struct {
			o object
			m [4]member
		}{}
		copy(x.m[:], ms)
		x.o.M = x.m[:]
		return &x.o
	case 5, 6:
		x := &struct {
			o object
			m [6]member
		}{}
		copy(x.m[:], ms)
		x.o.M = x.m[:len(ms):len(ms)]
		return &x.o
	case 7, 8:
		x := &struct {
			o object
			m [8]member
		}{}
		copy(x.m[:], ms)
		x.o.M = x.m[:len(ms):len(ms)]
		return &x.o
	}
	return &object{M: append([]member(nil), ms...)}
}

// memberStacks holds parser.members stacks for reuse.
var memberStacks = sync.Pool{New: func() any { s := make([]member, 0, 32); return &s }}

func (p *parser) pos() pos { return pos{p.line, p.i - p.lineStart + 1} }

func (p *parser) errf(format string, a ...any) *parseError {
	return &parseError{pos: p.pos(), msg: fmt.Sprintf(format, a...)}
}

func (p *parser) describeChar() string {
	r, _ := utf8.DecodeRune(p.data[p.i:])
	return fmt.Sprintf("'%c' (code %d)", r, r)
}

func (p *parser) skipWS() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\r':
			p.i++
		case '\n':
			p.i++
			p.line++
			p.lineStart = p.i
		default:
			return
		}
	}
}

const maxDepth = 1000

func (p *parser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, p.errf("Document nesting depth exceeds the maximum allowed")
	}
	if p.i >= len(p.data) {
		return nil, p.errf("Unexpected end-of-input: expected a value")
	}
	switch c := p.data[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't' || c == 'f' || c == 'n':
		return p.literal()
	default:
		if isIdentByte(c) {
			return nil, p.unrecognized()
		}
		return nil, p.errf("Unexpected character (%s): expected a valid value (JSON String, Number, Array, Object or token 'null', 'true' or 'false')", p.describeChar())
	}
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func (p *parser) unrecognized() error {
	start := p.pos()
	j := p.i
	for j < len(p.data) && (isIdentByte(p.data[j]) || p.data[j] >= '0' && p.data[j] <= '9') {
		j++
	}
	return &parseError{pos: start, msg: fmt.Sprintf("Unrecognized token '%s': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')", p.data[p.i:j])}
}

func (p *parser) literal() (any, error) {
	for _, lit := range []struct {
		s string
		v any
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if bytes.HasPrefix(p.data[p.i:], []byte(lit.s)) {
			end := p.i + len(lit.s)
			if end < len(p.data) && (isIdentByte(p.data[end]) || p.data[end] >= '0' && p.data[end] <= '9') {
				return nil, p.unrecognized()
			}
			p.i = end
			return lit.v, nil
		}
	}
	return nil, p.unrecognized()
}

func (p *parser) number() (any, error) {
	start := p.i
	if p.data[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.data) && p.data[p.i] == '0' && p.i+1 < len(p.data) && p.data[p.i+1] >= '0' && p.data[p.i+1] <= '9' {
		return nil, p.errf("Invalid numeric value: Leading zeroes not allowed")
	}
	if digits() == 0 {
		return nil, p.errf("Unexpected character (%s) in numeric value: expected digit (0-9) to follow minus sign, for valid numeric value", p.describeCharSafe())
	}
	if p.i < len(p.data) && p.data[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, p.errf("Unexpected character (%s) in numeric value: Decimal point not followed by a digit", p.describeCharSafe())
		}
	}
	if p.i < len(p.data) && (p.data[p.i] == 'e' || p.data[p.i] == 'E') {
		p.i++
		if p.i < len(p.data) && (p.data[p.i] == '+' || p.data[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errf("Unexpected character (%s) in numeric value: Exponent indicator not followed by a digit", p.describeCharSafe())
		}
	}
	return json.Number(p.text(start, p.i)), nil
}

func (p *parser) describeCharSafe() string {
	if p.i >= len(p.data) {
		return "end-of-input"
	}
	return p.describeChar()
}

func (p *parser) str() (string, error) {
	p.i++ // opening quote
	start := p.i
	for j := p.i; j < len(p.data); j++ {
		c := p.data[j]
		if c == '"' {
			p.i = j + 1
			return p.text(start, j), nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	var sb strings.Builder
	for {
		if p.i >= len(p.data) {
			return "", p.errf("Unexpected end-of-input: was expecting closing quote for a string value")
		}
		c := p.data[p.i]
		switch {
		case c == '"':
			sb.Write(p.data[start:p.i])
			p.i++
			return sb.String(), nil
		case c == '\\':
			sb.Write(p.data[start:p.i])
			p.i++
			if p.i >= len(p.data) {
				return "", p.errf("Unexpected end-of-input in character escape sequence")
			}
			e := p.data[p.i]
			p.i++
			switch e {
			case '"', '\\', '/':
				sb.WriteByte(e)
			case 'b':
				sb.WriteByte('\b')
			case 'f':
				sb.WriteByte('\f')
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", p.errf("Unexpected character in unicode escape sequence: expected a hex-digit for character escape sequence")
				}
				if utf16IsSurrogate(r) && p.i+6 <= len(p.data) && p.data[p.i] == '\\' && p.data[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					r2, ok := p.hex4()
					if ok {
						r = utf16Decode(r, r2)
					} else {
						p.i = save
					}
				}
				sb.WriteRune(r)
			default:
				p.i--
				return "", p.errf("Unrecognized character escape %s", p.describeChar())
			}
			start = p.i
		case c < 0x20:
			return "", p.errf("Illegal unquoted character ((CTRL-CHAR, code %d)): has to be escaped using backslash to be included in string value", c)
		default:
			p.i++
		}
	}
}

func (p *parser) hex4() (rune, bool) {
	if p.i+4 > len(p.data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.data[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}

func utf16IsSurrogate(r rune) bool { return r >= 0xd800 && r < 0xe000 }

func utf16Decode(r1, r2 rune) rune {
	if r1 >= 0xd800 && r1 < 0xdc00 && r2 >= 0xdc00 && r2 < 0xe000 {
		return (r1-0xd800)<<10 | (r2 - 0xdc00) + 0x10000
	}
	return utf8.RuneError
}

func (p *parser) object(depth int) (any, error) {
	p.i++ // {
	p.skipWS()
	if p.i < len(p.data) && p.data[p.i] == '}' {
		o := &object{}
		o.End = p.pos()
		p.i++
		return o, nil
	}
	base := len(p.members)
	defer func() { p.members = p.members[:base] }()
	for {
		p.skipWS()
		if p.i >= len(p.data) {
			return nil, p.errf("Unexpected end-of-input: expected close marker for Object")
		}
		if p.data[p.i] != '"' {
			if p.data[p.i] == '}' {
				return nil, p.errf("Unexpected character ('}' (code 125)): was expecting double-quote to start field name")
			}
			return nil, p.errf("Unexpected character (%s): was expecting double-quote to start field name", p.describeChar())
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipWS()
		if p.i >= len(p.data) {
			return nil, p.errf("Unexpected end-of-input: expected close marker for Object")
		}
		if p.data[p.i] != ':' {
			return nil, p.errf("Unexpected character (%s): was expecting a colon to separate field name and value", p.describeChar())
		}
		p.i++
		p.skipWS()
		vp := p.pos()
		for _, m := range p.members[base:] {
			if m.Key == key {
				return nil, &parseError{pos: vp, msg: fmt.Sprintf("Duplicate field '%s'", key)}
			}
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.members = append(p.members, member{Key: key, Val: v, Pos: vp})
		p.skipWS()
		if p.i >= len(p.data) {
			return nil, p.errf("Unexpected end-of-input: expected close marker for Object")
		}
		switch p.data[p.i] {
		case ',':
			p.i++
		case '}':
			o := newObject(p.members[base:])
			o.End = p.pos()
			p.i++
			return o, nil
		default:
			return nil, p.errf("Unexpected character (%s): was expecting comma to separate Object entries", p.describeChar())
		}
	}
}

func (p *parser) array(depth int) (any, error) {
	p.i++ // [
	a := &array{}
	p.skipWS()
	if p.i < len(p.data) && p.data[p.i] == ']' {
		p.i++
		return a, nil
	}
	for {
		p.skipWS()
		vp := p.pos()
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a.V = append(a.V, v)
		a.P = append(a.P, vp)
		p.skipWS()
		if p.i >= len(p.data) {
			return nil, p.errf("Unexpected end-of-input: expected close marker for Array")
		}
		switch p.data[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return a, nil
		default:
			return nil, p.errf("Unexpected character (%s): was expecting comma to separate Array entries", p.describeChar())
		}
	}
}

// tokenName is the XContentParser.Token name of a value's first token.
func tokenName(v any) string {
	switch v.(type) {
	case *object:
		return "START_OBJECT"
	case *array:
		return "START_ARRAY"
	case string:
		return "VALUE_STRING"
	case json.Number:
		return "VALUE_NUMBER"
	case bool:
		return "VALUE_BOOLEAN"
	case nil:
		return "VALUE_NULL"
	}
	return "VALUE_EMBEDDED_OBJECT"
}

// jacksonToken is Jackson's JsonToken name, used in messages that come from
// the JSON parser itself.
func jacksonToken(v any) string {
	switch t := v.(type) {
	case json.Number:
		if strings.ContainsAny(string(t), ".eE") {
			return "VALUE_NUMBER_FLOAT"
		}
		return "VALUE_NUMBER_INT"
	case bool:
		if t {
			return "VALUE_TRUE"
		}
		return "VALUE_FALSE"
	}
	return tokenName(v)
}

// marshal renders a JSON tree compactly.
func marshal(v any) []byte {
	var b bytes.Buffer
	writeJSON(&b, v)
	return b.Bytes()
}

func writeJSON(b *bytes.Buffer, v any) {
	switch t := v.(type) {
	case nil:
		b.WriteString("null")
	case *object:
		if t == nil {
			b.WriteString("null")
			return
		}
		b.WriteByte('{')
		for i, m := range t.M {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, m.Key)
			b.WriteByte(':')
			writeJSON(b, m.Val)
		}
		b.WriteByte('}')
	case *array:
		writeSlice(b, t.V)
	case []any:
		writeSlice(b, t)
	case []*object:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON(b, e)
		}
		b.WriteByte(']')
	case []string:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
			b.WriteByte(':')
			writeJSON(b, t[k])
		}
		b.WriteByte('}')
	case string:
		writeString(b, t)
	case json.Number:
		b.WriteString(string(t))
	case json.RawMessage:
		b.Write(t)
	case rawSource:
		b.Write(t)
	case bool:
		if t {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int:
		b.WriteString(strconv.Itoa(t))
	case int64:
		b.WriteString(strconv.FormatInt(t, 10))
	case float64:
		b.WriteString(formatDouble(t))
	case float32:
		b.WriteString(formatDouble(float64(t)))
	default:
		raw, err := json.Marshal(t)
		if err != nil {
			b.WriteString("null")
			return
		}
		b.Write(raw)
	}
}

// rawSource is a document _source, written back byte for byte.
type rawSource []byte

func writeSlice(b *bytes.Buffer, vs []any) {
	b.WriteByte('[')
	for i, e := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSON(b, e)
	}
	b.WriteByte(']')
}

// writeString writes s as a JSON string the way Jackson does: control
// characters, quotes and backslashes escaped, and (unlike encoding/json) no
// HTML escaping of <, > and &. Invalid UTF-8 becomes U+FFFD.
func writeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b.WriteString(s[start:i])
			b.WriteString(`\ufffd`)
			i++
			start = i
			continue
		}
		b.WriteString(s[start:i])
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
		i++
		start = i
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// formatDouble prints a float the way a JSON client reads it back exactly.
func formatDouble(f float64) string {
	if math.IsInf(f, 1) {
		return `"Infinity"`
	}
	if math.IsInf(f, -1) {
		return `"-Infinity"`
	}
	if math.IsNaN(f) {
		return `"NaN"`
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// javaString renders a value the way Java's Map/List toString does; ES uses
// it for "Preview of field's value".
func javaString(v any) string {
	switch t := v.(type) {
	case *object:
		parts := make([]string, len(t.M))
		for i, m := range t.M {
			parts[i] = m.Key + "=" + javaString(m.Val)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case *array:
		parts := make([]string, len(t.V))
		for i, e := range t.V {
			parts[i] = javaString(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case nil:
		return "null"
	case string:
		return t
	case json.Number:
		return string(t)
	case bool:
		return strconv.FormatBool(t)
	}
	return fmt.Sprint(v)
}
