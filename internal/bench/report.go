package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream/internal/testenv"
)

// figure is one reported quantity: one value per run, reported as their
// median. When limit names another figure of the same report, the
// fraction of that limit reached is computed run by run (the two were
// measured in the same run) and reported as its median.
type figure struct {
	name, unit, desc string
	target           string
	limit            string // name of the figure that bounds this one
	higherBetter     bool
	values           []float64
}

// report collects the figures of one scenario and the load average around
// each run.
type report struct {
	scenario string
	figs     []*figure
	byName   map[string]*figure
	loads    [][2]float64 // 1-minute load average before and after each run
	busy     []float64    // share of the machine's CPU time not idle during each run
	notes    []string
}

func newReport(scenario string, runs int) *report {
	return &report{scenario: scenario, byName: map[string]*figure{}, loads: make([][2]float64, 0, runs)}
}

// declare adds a figure; values are added with add. Declaring a name twice
// returns the first declaration.
func (r *report) declare(f figure) *figure {
	if old, ok := r.byName[f.name]; ok {
		return old
	}
	p := &f
	r.figs = append(r.figs, p)
	r.byName[f.name] = p
	return p
}

// add records one run's value of the figure name, which must be declared.
func (r *report) add(name string, v float64) {
	f, ok := r.byName[name]
	if !ok {
		panic("bench: undeclared figure " + name)
	}
	f.values = append(f.values, v)
}

// note adds a line printed under the table.
func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// run calls fn as run i (from 0), recording the load average around it.
func (r *report) run(i int, fn func() error) error {
	before, cpu := loadAvg(), cpuTimes()
	err := fn()
	r.loads = append(r.loads, [2]float64{before, loadAvg()})
	r.busy = append(r.busy, busyShare(cpu, cpuTimes()))
	if err != nil {
		return fmt.Errorf("run %d: %w", i+1, err)
	}
	return nil
}

// fractions returns the per-run fractions of f's limit reached.
func (r *report) fractions(f *figure) []float64 {
	l, ok := r.byName[f.limit]
	if !ok || len(l.values) != len(f.values) {
		return nil
	}
	out := make([]float64, len(f.values))
	for i, v := range f.values {
		if f.higherBetter {
			out[i] = v / l.values[i]
		} else {
			out[i] = l.values[i] / v
		}
	}
	return out
}

// median returns the median of vs (the mean of the middle two for an even
// count), NaN for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// num formats a figure value with about three significant digits.
func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "—"
	case a >= 100_000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// resultLine is the machine-readable form of one figure.
type resultLine struct {
	Scenario    string       `json:"scenario"`
	Figure      string       `json:"figure"`
	Desc        string       `json:"desc"`
	Unit        string       `json:"unit"`
	Median      float64      `json:"median"`
	Runs        []float64    `json:"runs"`
	Target      string       `json:"target,omitempty"`
	Limit       string       `json:"limit,omitempty"`
	LimitMedian *float64     `json:"limit_median,omitempty"`
	Fraction    *float64     `json:"fraction,omitempty"`
	Load        [][2]float64 `json:"load_1m"`
	CPUBusy     []float64    `json:"cpu_busy"`
}

func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tunit\tmedian\truns\ttarget\traw limit (median)\tfraction of limit")
	for _, f := range r.figs {
		if len(f.values) == 0 {
			continue
		}
		runs := make([]string, len(f.values))
		for i, v := range f.values {
			runs[i] = num(v)
		}
		limit, frac := "", ""
		if l, ok := r.byName[f.limit]; ok {
			limit = fmt.Sprintf("%s %s", num(median(l.values)), l.name)
			if fr := r.fractions(f); fr != nil {
				frac = fmt.Sprintf("%.0f%%", 100*median(fr))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.name, f.unit, num(median(f.values)),
			strings.Join(runs, " "), f.target, limit, frac)
	}
	tw.Flush()
	loads := make([]string, len(r.loads))
	for i, l := range r.loads {
		loads[i] = fmt.Sprintf("%.2f→%.2f", l[0], l[1])
	}
	fmt.Fprintf(w, "load average (1 min) before→after each run: %s\n", strings.Join(loads, ", "))
	busy := make([]string, len(r.busy))
	for i, b := range r.busy {
		busy[i] = fmt.Sprintf("%.0f%%", 100*b)
	}
	fmt.Fprintf(w, "machine CPU busy during each run (all processes, this one included): %s\n", strings.Join(busy, ", "))
	for _, n := range r.notes {
		fmt.Fprintln(w, n)
	}
	for _, f := range r.figs {
		if len(f.values) == 0 {
			continue
		}
		line := resultLine{
			Scenario: r.scenario, Figure: f.name, Desc: f.desc, Unit: f.unit,
			Median: round(median(f.values)), Runs: roundAll(f.values), Target: f.target, Load: r.loads, CPUBusy: roundAll(r.busy),
		}
		if l, ok := r.byName[f.limit]; ok {
			line.Limit = l.name
			lm := round(median(l.values))
			line.LimitMedian = &lm
			if fr := r.fractions(f); fr != nil {
				m := round(median(fr))
				line.Fraction = &m
			}
		}
		b, _ := json.Marshal(line)
		fmt.Fprintf(w, "RESULT %s\n", b)
	}
}

func round(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Round(v*1000) / 1000
}

func roundAll(vs []float64) []float64 {
	out := make([]float64, len(vs))
	for i, v := range vs {
		out[i] = round(v)
	}
	return out
}

// loadAvg returns the 1-minute load average, or NaN where /proc has none.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// cpuTimes returns the machine's idle and total CPU time so far, in
// clock ticks, from the first line of /proc/stat; zeros where there is none.
func cpuTimes() [2]uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return [2]uint64{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return [2]uint64{}
	}
	var idle, total uint64
	// user nice system idle iowait irq softirq steal; guest time is
	// already counted in user and nice.
	for i, v := range f[1:min(len(f), 9)] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return [2]uint64{idle, total}
}

// busyShare is the share of CPU time between two cpuTimes that was not
// idle.
func busyShare(a, b [2]uint64) float64 {
	if b[1] <= a[1] {
		return math.NaN()
	}
	return 1 - float64(b[0]-a[0])/float64(b[1]-a[1])
}

// machine describes where the figures were taken.
type machine struct {
	Cores      int               `json:"cores"`
	CPU        string            `json:"cpu"`
	MemGiB     float64           `json:"mem_gib"`
	Load       string            `json:"loadavg"`
	Go         string            `json:"go"`
	GOMAXPROCS int               `json:"gomaxprocs"`
	PostgreSQL string            `json:"postgresql"`
	PGSettings string            `json:"postgresql_settings"`
	Redis      string            `json:"redis"`
	Modules    map[string]string `json:"modules"`
}

// machineInfo reads the machine's and the servers' descriptions.
func machineInfo(ctx context.Context) (*machine, error) {
	m := &machine{Cores: runtime.NumCPU(), Go: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), Modules: map[string]string{}}
	m.CPU = cpuModel()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.Load = strings.TrimSpace(string(b))
	}
	m.MemGiB = memTotalGiB()
	db, err := sql.Open("pgx", testenv.DatabaseURL())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var fsync, syncCommit string
	if err := db.QueryRowContext(ctx, "SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit')").
		Scan(&m.PostgreSQL, &fsync, &syncCommit); err != nil {
		return nil, fmt.Errorf("ask PostgreSQL at DATABASE_URL for its version: %w", err)
	}
	m.PGSettings = "fsync=" + fsync + " synchronous_commit=" + syncCommit
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("ask Redis at REDIS_URL for its version: %w", err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
			m.Redis = v
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "gorm.io/gorm", "gorm.io/driver/postgres", "github.com/jackc/pgx/v5", "github.com/redis/go-redis/v9",
				"github.com/bsm/redislock", "github.com/elastic/go-elasticsearch/v8":
				m.Modules[d.Path] = d.Version
			}
		}
	}
	return m, nil
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotalGiB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return math.Round(kb/1024/1024*10) / 10
		}
	}
	return 0
}

func (m *machine) print(w io.Writer) {
	mods := make([]string, 0, len(m.Modules))
	for _, k := range slices.Sorted(maps.Keys(m.Modules)) {
		mods = append(mods, k+" "+m.Modules[k])
	}
	fmt.Fprintf(w, "machine: %d cores (%s), %.1f GiB, load average %s\n", m.Cores, m.CPU, m.MemGiB, m.Load)
	fmt.Fprintf(w, "versions: %s (GOMAXPROCS %d), PostgreSQL %s (%s), Redis %s\n", m.Go, m.GOMAXPROCS, m.PostgreSQL, m.PGSettings, m.Redis)
	fmt.Fprintf(w, "modules: %s\n", strings.Join(mods, ", "))
	b, _ := json.Marshal(m)
	fmt.Fprintf(w, "MACHINE %s\n", b)
}
