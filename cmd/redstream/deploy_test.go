package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"go.yaml.in/yaml/v3"
)

// The monitoring files in deploy/, which TestDeployFiles checks against a
// running worker.
var (
	dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "redstream.json")
	rulesFile     = filepath.Join("..", "..", "deploy", "prometheus", "redstream-rules.yaml")
)

// TestDeployFiles checks the Grafana dashboard and the Prometheus alerting
// rules shipped in deploy/: both parse, and every metric their queries
// use is one that a running worker exports on /metrics, with the right
// type for the function applied to it (rate and increase take counters).
// The dashboard is importable anywhere (its panels use a data source
// variable); the rules have the structure `promtool check rules` wants,
// templates that parse, and every alert docs/OPERATIONS.md describes.
//
// Queries are read with promqlNames, a small PromQL scanner, rather than
// with Prometheus's parser, whose module would add tens of megabytes of
// dependencies to the library's module for one test.
func TestDeployFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    delay: 1h\n")
	startBin(t, f.vars, "worker", "--config", f.config)
	waitReady(t, f.listen)
	p := product{ID: 1, Title: "one"}
	f.create(t, &p)
	eventually(t, "the document", func() bool { return f.indexed(&p) })
	code, body := httpGet("http://" + f.listen + "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	exported := parseExposition(t, body)

	t.Run("dashboard", func(t *testing.T) {
		t.Parallel()
		for _, q := range dashboardQueries(t) {
			checkQuery(t, exported, q.where, q.expr)
		}
	})
	t.Run("rules", func(t *testing.T) {
		t.Parallel()
		for _, q := range ruleQueries(t) {
			checkQuery(t, exported, q.where, q.expr)
		}
	})
}

// exposition is what /metrics exports: the type of each metric family,
// and the name of each sample (a histogram's _bucket, _sum and _count).
type exposition struct {
	types   map[string]string // family → counter, gauge, histogram, …
	samples map[string]string // sample name → its family
}

// parseExposition reads the Prometheus text format.
func parseExposition(t *testing.T, body string) exposition {
	t.Helper()
	e := exposition{types: map[string]string{}, samples: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 {
				t.Fatalf("/metrics: bad TYPE line %q", line)
			}
			e.types[f[0]] = f[1]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		family := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && (e.types[base] == "histogram" || e.types[base] == "summary") {
				family = base
			}
		}
		if _, ok := e.types[family]; !ok {
			t.Fatalf("/metrics: sample %q has no TYPE", name)
		}
		e.samples[name] = family
	}
	if len(e.samples) == 0 {
		t.Fatal("/metrics exports nothing")
	}
	return e
}

// query is a PromQL expression of a deploy file and where it is.
type query struct{ where, expr string }

// checkQuery reports the names in expr that are not exported metrics, and
// rate, irate and increase of anything but a counter (or a histogram's
// series), deriv and delta of anything but a gauge.
func checkQuery(t *testing.T, e exposition, where, expr string) {
	t.Helper()
	names, err := promqlNames(expr)
	if err != nil {
		t.Errorf("%s: %v in %s", where, err, expr)
		return
	}
	if len(names) == 0 {
		t.Errorf("%s: queries no metric: %s", where, expr)
	}
	for _, n := range names {
		family, ok := e.samples[n.metric]
		if !ok {
			t.Errorf("%s: metric %s is not exported by the worker: %s", where, n.metric, expr)
			continue
		}
		typ := e.types[family]
		switch n.fn {
		case "rate", "irate", "increase", "resets":
			if typ != "counter" && typ != "histogram" {
				t.Errorf("%s: %s of %s, a %s: %s", where, n.fn, n.metric, typ, expr)
			}
		case "deriv", "delta", "idelta", "predict_linear":
			if typ != "gauge" {
				t.Errorf("%s: %s of %s, a %s: %s", where, n.fn, n.metric, typ, expr)
			}
		}
	}
}

// promqlName is a metric an expression selects, with the function or
// aggregation applied to it directly, if any (rate in rate(m[5m])).
type promqlName struct{ metric, fn string }

var (
	// PromQL functions and aggregations a deploy file may use.
	promqlFuncs = map[string]bool{}
	// Words that are neither metrics nor functions.
	promqlKeywords = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "offset": true, "and": true, "or": true, "unless": true, "inf": true, "nan": true,
	}
	promqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlOffset   = regexp.MustCompile(`\boffset\s+-?[0-9a-z]+`)
	promqlNumber   = regexp.MustCompile(`(^|[^a-zA-Z0-9_:.])(0x[0-9a-fA-F]+|[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?|\.[0-9]+([eE][-+]?[0-9]+)?)`)
	promqlIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// A Grafana variable: $name, ${name} or ${name:format}.
	grafanaVar = regexp.MustCompile(`\$(\{[a-zA-Z0-9_]+(:[a-z]+)?\}|[a-zA-Z0-9_]+)`)
)

func init() {
	for _, f := range strings.Fields(`abs absent absent_over_time avg avg_over_time bottomk ceil changes
		clamp clamp_max clamp_min count count_over_time count_values delta deriv exp floor group
		histogram_avg histogram_count histogram_fraction histogram_quantile histogram_sum idelta
		increase irate label_join label_replace last_over_time ln max max_over_time min
		min_over_time predict_linear present_over_time quantile quantile_over_time rate resets
		round scalar sort sort_desc sqrt stddev stdvar sum sum_over_time time timestamp topk
		vector`) {
		promqlFuncs[f] = true
	}
}

// promqlNames returns the metrics expr selects. It strips what cannot
// hold a metric name (strings, label matchers, ranges, grouping labels,
// offsets, numbers) and takes each remaining word: a function when a
// parenthesis follows (it must be a known one), a keyword, or a metric.
// It refuses unbalanced brackets and leftover Grafana variables.
func promqlNames(expr string) ([]promqlName, error) {
	s := promqlString.ReplaceAllString(expr, `""`)
	if strings.ContainsAny(s, "$") {
		return nil, fmt.Errorf("a Grafana variable outside a label value or range")
	}
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRange.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	s = promqlOffset.ReplaceAllString(s, " ")
	s = promqlNumber.ReplaceAllString(s, "$1 ")
	if strings.ContainsAny(s, "{}[]") {
		return nil, fmt.Errorf("unbalanced braces or brackets")
	}
	depth := 0
	for _, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		}
		if depth < 0 {
			return nil, fmt.Errorf("unbalanced parentheses")
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced parentheses")
	}
	var names []promqlName
	var open []string // the function of each open parenthesis, "" for none
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '(':
			open = append(open, "")
			i++
		case c == ')':
			open = open[:len(open)-1]
			i++
		case c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z'):
			word := promqlIdent.FindString(s[i:])
			i += len(word)
			rest := strings.TrimLeft(s[i:], " \t\n")
			switch {
			case strings.HasPrefix(rest, "("):
				if !promqlFuncs[word] {
					return nil, fmt.Errorf("unknown function %s", word)
				}
				i = len(s) - len(rest) + 1
				open = append(open, word)
			case promqlKeywords[strings.ToLower(word)]:
			default:
				fn := ""
				if len(open) > 0 {
					fn = open[len(open)-1]
				}
				names = append(names, promqlName{metric: word, fn: fn})
			}
		default:
			i++
		}
	}
	return names, nil
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashboardPanel `json:"panels"`
}

type dashboardPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // of a collapsed row
}

// dashboardQueries parses the dashboard, checks its structure, and returns
// its queries with Grafana's variables replaced as Prometheus sees them.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion == 0 || len(d.Panels) == 0 {
		t.Fatalf("%s: title %q, uid %q, schemaVersion %d, %d panels; want all set", dashboardFile, d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}
	// Variables: a Prometheus data source variable, so that the dashboard
	// imports into any Grafana; query variables on exported metrics.
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	var queries []query
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			if v.Name != "datasource" || !strings.Contains(string(v.Query), `"prometheus"`) {
				t.Errorf("%s: data source variable %q of %s; want datasource, of prometheus", dashboardFile, v.Name, v.Query)
			}
		case "query":
			m := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_]+)\)$`).FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(selector, label)", dashboardFile, v.Name, v.Definition)
				continue
			}
			var q struct{ Query string }
			if err := json.Unmarshal(v.Query, &q); err != nil || q.Query != v.Definition {
				t.Errorf("%s: variable %s: query %s differs from its definition %q", dashboardFile, v.Name, v.Query, v.Definition)
			}
			queries = append(queries, query{"variable " + v.Name, m[1]})
		default:
			t.Errorf("%s: variable %s of type %s", dashboardFile, v.Name, v.Type)
		}
	}
	if !vars["datasource"] {
		t.Fatalf("%s: no datasource variable", dashboardFile)
	}
	var panels []dashboardPanel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("%s: id missing or used twice", where)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", where, g)
		}
		overlaps := ""
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok && overlaps == "" {
					overlaps = other
				}
				taken[cell{x, y}] = where
			}
		}
		if overlaps != "" {
			t.Errorf("%s overlaps %s", where, overlaps)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("%s: no title or no query", where)
		}
		var ds struct{ Type, UID string }
		if err := json.Unmarshal(p.Datasource, &ds); err != nil || ds.Type != "prometheus" || ds.UID != "${datasource}" {
			t.Errorf("%s: data source %s; want the prometheus datasource variable", where, p.Datasource)
		}
		for _, q := range p.Targets {
			if q.Expr == "" || q.RefID == "" {
				t.Errorf("%s: a target without expr or refId", where)
				continue
			}
			queries = append(queries, query{where + " " + q.RefID, q.Expr})
		}
	}
	// Every variable used is defined; Prometheus sees a value in its
	// place: label values in matchers, a duration in ranges.
	for i, q := range queries {
		for _, m := range grafanaVar.FindAllStringSubmatch(q.expr, -1) {
			name := strings.Trim(strings.SplitN(strings.Trim(m[1], "{}"), ":", 2)[0], "{}")
			if !vars[name] {
				t.Errorf("%s: undefined variable $%s", q.where, name)
			}
		}
		queries[i].expr = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h").Replace(q.expr)
		queries[i].expr = grafanaVar.ReplaceAllString(queries[i].expr, "x")
	}
	return queries
}

// ruleFile is Prometheus's rule file format (rulefmt): unknown fields are
// an error, as in `promtool check rules`.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Limit    int    `yaml:"limit"`
		Rules    []struct {
			Record        string            `yaml:"record"`
			Alert         string            `yaml:"alert"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var (
	promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
	promName     = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	// The functions of Prometheus's alert templates, for parsing only.
	promTemplateFuncs = template.FuncMap{}
)

func init() {
	for _, f := range strings.Fields(`args externalURL first graphLink humanize humanize1024
		humanizeDuration humanizePercentage humanizeTimestamp label match parseDuration pathPrefix
		query reReplaceAll safeHtml sortByLabel stripDomain stripPort strvalue tableLink title
		toDuration toLower toTime toUpper urlQueryEscape value now`) {
		promTemplateFuncs[f] = func(...any) any { return nil }
	}
}

// ruleQueries parses the rules, checks their structure, and returns their
// expressions.
func ruleQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	ops, err := os.ReadFile(filepath.Join("..", "..", "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	var queries []query
	var alerts []string
	groups := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] || len(g.Rules) == 0 {
			t.Errorf("%s: group %q: unnamed, named twice or empty", rulesFile, g.Name)
		}
		groups[g.Name] = true
		if g.Interval != "" && !promDuration.MatchString(g.Interval) {
			t.Errorf("%s: group %s: interval %q", rulesFile, g.Name, g.Interval)
		}
		for i, r := range g.Rules {
			where := fmt.Sprintf("group %s rule %d %s%s", g.Name, i, r.Alert, r.Record)
			switch {
			case (r.Alert == "") == (r.Record == ""):
				t.Errorf("%s: want one of alert and record", where)
			case r.Record != "" && (r.For != "" || len(r.Annotations) > 0):
				t.Errorf("%s: a recording rule with for or annotations", where)
			case r.Alert != "" && !promName.MatchString(r.Alert):
				t.Errorf("%s: invalid alert name", where)
			}
			for _, d := range []string{r.For, r.KeepFiringFor} {
				if d != "" && !promDuration.MatchString(d) {
					t.Errorf("%s: duration %q", where, d)
				}
			}
			for k := range r.Labels {
				if !promName.MatchString(k) {
					t.Errorf("%s: label name %q", where, k)
				}
			}
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
				if s := r.Labels["severity"]; s != "warning" && s != "critical" {
					t.Errorf("%s: severity %q, want warning or critical", where, s)
				}
				if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("%s: want a summary and a description", where)
				}
				if !bytes.Contains(ops, []byte("`"+r.Alert+"`")) {
					t.Errorf("%s: docs/OPERATIONS.md does not describe it", where)
				}
			}
			for k, text := range r.Annotations {
				// Prometheus defines $labels, $externalLabels and $value
				// before the text.
				defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"
				if _, err := template.New(k).Funcs(promTemplateFuncs).Parse(defs + text); err != nil {
					t.Errorf("%s: annotation %s: %v", where, k, err)
				}
			}
			queries = append(queries, query{where, r.Expr})
		}
	}
	for _, want := range []string{"RedstreamConsumerLagHigh", "RedstreamConsumerStalled", "RedstreamDeadLettersGrowing",
		"RedstreamNoLeaseHolder", "RedstreamUnconfirmedBacklogGrowing"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("%s: no alert %s", rulesFile, want)
		}
	}
	return queries
}

// TestPromQLNames pins the scanner the deploy test reads queries with,
// against what Prometheus's parser finds in the same expressions.
func TestPromQLNames(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ expr, want string }{
		{`up`, "up"},
		{`sum by (stream, consumer) (rate(a_total{stream=~"x", job="y"}[5m]))`, "a_total/rate"},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{result="ok"}[5m])))`, "h_bucket/rate"},
		{`max by (s) (g) > 100 and max by (s) (deriv(g[15m])) > 0`, "g/max g/deriv"},
		{`count(max by (s, w) (l) == 0) or vector(0)`, "l/max"},
		{`a and on (job, instance) b{job=~"x"} offset 5m`, "a b"},
		{`sum without (instance) (m) / ignoring (x) group_left (y) n * 1e3 - 0.5`, "m/sum n"},
		{`(a + b{x="}"}) > bool 1`, "a b"},
		{`absent(redstream_lease_held)`, "redstream_lease_held/absent"},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, "m/label_replace"},
		{`rate(m[5m:1m])`, "m/rate"},
	} {
		names, err := promqlNames(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		var got []string
		for _, n := range names {
			if n.fn != "" {
				got = append(got, n.metric+"/"+n.fn)
			} else {
				got = append(got, n.metric)
			}
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%s: %q, want %q", c.expr, g, c.want)
		}
	}
	for _, bad := range []string{`rate(m[5m]`, `m{a="b"`, `rat(m[5m])`, `m[$bad]x{`, `sum(m) by $x`} {
		if names, err := promqlNames(bad); err == nil {
			t.Errorf("%s: %v, want an error", bad, names)
		}
	}
}
