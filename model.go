package redstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"gorm.io/gorm/schema"
)

// Namer is implemented by a model that chooses its stream name, for example
// to shard (see ShardName) or to share a stream with a Ruby application
// whose model name differs from the table. The default stream name is the
// model's GORM table name ("products" for Product).
type Namer interface {
	RedstreamName() string
}

// Payloader is implemented by a model that chooses its message payload.
// The value is encoded as compact JSON without HTML escaping, as the Ruby
// gem's JSON.dump does. The default payload is {"id":<primary key>}, or
// {"id":[k1,k2,…]} in primary-key order for a composite key.
type Payloader interface {
	RedstreamPayload() any
}

// Ref names one record by stream and primary key without a model value. Use
// it with Producer methods when only ids are at hand, for example around raw
// SQL:
//
//	p.Bulk(ctx, []redstream.Ref{{Stream: "products", ID: 7}}, fn)
//
// Its payload is {"id":<ID>}.
type Ref struct {
	Stream string
	ID     any
}

// RedstreamName implements Namer.
func (r Ref) RedstreamName() string { return r.Stream }

// RedstreamPayload implements Payloader.
func (r Ref) RedstreamPayload() any { return idPayload{ID: r.ID} }

type idPayload struct {
	ID any `json:"id"`
}

// ShardName returns the stream name of a record whose key is id when the
// stream name is split into shards streams: "<name>-<n>" with n the CRC-32
// (IEEE) of the id's decimal or string form, modulo shards. Every change of
// one record then lands in the same shard, in order. A Ruby producer computes
// the same shard with "#{name}-#{Zlib.crc32(id.to_s) % shards}".
// shards below 2 returns name unchanged.
//
// A name with a Redis Cluster hash tag gets its shard number inside the
// tag: shard 3 of "{products}" is "{products-3}", so the shards of one
// stream have hash slots of their own and spread over the masters. (Its
// keys must not be tagged by the namespace too, or every key shares the
// namespace's slot.)
func ShardName(name string, id any, shards int) string {
	if shards < 2 {
		return name
	}
	var key string
	switch v := id.(type) {
	case string:
		key = v
	case []byte:
		key = string(v)
	case fmt.Stringer:
		key = v.String()
	default:
		key = fmt.Sprint(v)
	}
	return shardName(name, uint64(crc32.ChecksumIEEE([]byte(key))%uint32(shards)))
}

// ShardNames returns the stream names of name split into shards streams,
// "<name>-0" to "<name>-<shards-1>", the names ShardName gives; for shards
// below 2, name alone.
func ShardNames(name string, shards int) []string {
	if shards < 2 {
		return []string{name}
	}
	names := make([]string, shards)
	for i := range names {
		names[i] = shardName(name, uint64(i))
	}
	return names
}

// shardName names shard n of name: "<name>-<n>", or, for a name with a
// Redis Cluster hash tag, the tag's own shard, "{products}" → "{products-3}",
// so that the shards of one stream land in different hash slots and spread
// over the cluster's masters (every key of one shard still shares a slot).
func shardName(name string, n uint64) string {
	suffix := "-" + strconv.FormatUint(n, 10)
	if i := strings.IndexByte(name, '{'); i >= 0 {
		if j := strings.IndexByte(name[i+1:], '}'); j > 0 {
			end := i + 1 + j
			return name[:end] + suffix + name[end:]
		}
	}
	return name + suffix
}

// entry is one message to write: its stream name (not key) and payload,
// and, once its delay message is written, that message's id.
type entry struct {
	stream  string
	payload string
	delayID string
}

// resolver turns model values into entries, caching parsed schemas.
type resolver struct {
	cache sync.Map
	namer schema.Namer
}

var errNoPrimaryKey = errors.New("redstream: model has no primary key")

// entriesOf appends the entries of v: a model struct, a pointer to one, a
// Ref, or a slice or array of those. Records whose primary key is zero are
// skipped.
func (r *resolver) entriesOf(ctx context.Context, dst []entry, v any) ([]entry, error) {
	switch rec := v.(type) {
	case nil:
		return dst, nil
	case Ref:
		e, err := refEntry(rec)
		if err != nil {
			return dst, err
		}
		return append(dst, e), nil
	case []Ref:
		for _, ref := range rec {
			e, err := refEntry(ref)
			if err != nil {
				return dst, err
			}
			dst = append(dst, e)
		}
		return dst, nil
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return dst, nil
		}
		rv = rv.Elem()
	}
	elem := rv.Type()
	if k := rv.Kind(); k == reflect.Slice || k == reflect.Array {
		elem = elem.Elem()
		for elem.Kind() == reflect.Pointer {
			elem = elem.Elem()
		}
		if elem == reflect.TypeFor[Ref]() {
			for i := range rv.Len() {
				var err error
				if dst, err = r.entriesOf(ctx, dst, rv.Index(i).Interface()); err != nil {
					return dst, err
				}
			}
			return dst, nil
		}
	}
	if elem.Kind() != reflect.Struct {
		return dst, fmt.Errorf("redstream: cannot make a message of %T: want a model struct, a pointer or slice of them, or a Ref", v)
	}
	sch, err := schema.Parse(reflect.New(elem).Interface(), &r.cache, r.namer)
	if err != nil {
		return dst, fmt.Errorf("redstream: parse model %s: %w", elem, err)
	}
	return appendEntries(ctx, dst, sch, rv)
}

func refEntry(ref Ref) (entry, error) {
	if ref.Stream == "" {
		return entry{}, errors.New("redstream: Ref has no stream name")
	}
	payload, err := encodePayload(idPayload{ID: ref.ID})
	if err != nil {
		return entry{}, err
	}
	return entry{stream: ref.Stream, payload: payload}, nil
}

// appendEntries appends the entries of rv, a struct or a slice or array of
// structs or pointers to structs of the model sch.
func appendEntries(ctx context.Context, dst []entry, sch *schema.Schema, rv reflect.Value) ([]entry, error) {
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return dst, nil
		}
		rv = rv.Elem()
	}
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		for i := range rv.Len() {
			var err error
			if dst, err = appendEntries(ctx, dst, sch, rv.Index(i)); err != nil {
				return dst, err
			}
		}
		return dst, nil
	case reflect.Struct:
		e, ok, err := structEntry(ctx, sch, rv)
		if err != nil || !ok {
			return dst, err
		}
		return append(dst, e), nil
	}
	return dst, fmt.Errorf("redstream: cannot make a message of a %s", rv.Type())
}

// structEntry returns the entry of one model struct; ok is false when its
// primary key is zero (not known).
func structEntry(ctx context.Context, sch *schema.Schema, rv reflect.Value) (e entry, ok bool, err error) {
	if len(sch.PrimaryFields) == 0 {
		return entry{}, false, fmt.Errorf("%w: %s", errNoPrimaryKey, sch.Name)
	}
	// A zero key is unknown (not yet assigned); in a composite key a zero
	// part is a legitimate value, and only an all-zero key is unknown.
	var (
		key   any   // a single-column key
		keys  []any // a composite key
		known bool
	)
	if len(sch.PrimaryFields) == 1 {
		v, zero := sch.PrimaryFields[0].ValueOf(ctx, rv)
		key, known = v, !zero
	} else {
		keys = make([]any, len(sch.PrimaryFields))
		for i, f := range sch.PrimaryFields {
			v, zero := f.ValueOf(ctx, rv)
			keys[i] = v
			known = known || !zero
		}
	}
	if !known {
		return entry{}, false, nil
	}
	iface := modelInterface(rv)
	e.stream = sch.Table
	if n, ok := iface.(Namer); ok {
		e.stream = n.RedstreamName()
	}
	if p, ok := iface.(Payloader); ok {
		e.payload, err = encodePayload(p.RedstreamPayload())
	} else if keys == nil {
		e.payload, err = singleKeyPayload(key)
	} else {
		e.payload, err = encodePayload(idPayload{ID: keys})
	}
	if err != nil {
		return entry{}, false, fmt.Errorf("redstream: payload of %s: %w", sch.Name, err)
	}
	if e.stream == "" {
		return entry{}, false, fmt.Errorf("redstream: empty stream name for %s", sch.Name)
	}
	return e, true, nil
}

// modelInterface returns rv as an interface value whose method set includes
// pointer-receiver methods.
func modelInterface(rv reflect.Value) any {
	if rv.CanAddr() {
		return rv.Addr().Interface()
	}
	p := reflect.New(rv.Type())
	p.Elem().Set(rv)
	return p.Interface()
}

// singleKeyPayload encodes the default payload {"id":<key>} of a
// single-column key; composite keys are {"id":[k1,k2,…]}.
func singleKeyPayload(key any) (string, error) {
	var buf [32]byte // `{"id":` + 20 digits + `}`
	if b, ok := appendIntID(append(buf[:0], `{"id":`...), key); ok {
		return string(append(b, '}')), nil // one allocation
	}
	return encodePayload(idPayload{ID: key})
}

// appendIntID appends an integer key in decimal, without encoding/json;
// ok is false for other kinds of key.
func appendIntID(b []byte, v any) ([]byte, bool) {
	switch n := v.(type) {
	case int:
		return strconv.AppendInt(b, int64(n), 10), true
	case int64:
		return strconv.AppendInt(b, n, 10), true
	case int32:
		return strconv.AppendInt(b, int64(n), 10), true
	case uint:
		return strconv.AppendUint(b, uint64(n), 10), true
	case uint64:
		return strconv.AppendUint(b, n, 10), true
	case uint32:
		return strconv.AppendUint(b, uint64(n), 10), true
	}
	return b, false
}

// encodePayload encodes v as compact JSON without HTML escaping, the bytes
// Ruby's JSON.dump produces for the same value.
func encodePayload(v any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}
