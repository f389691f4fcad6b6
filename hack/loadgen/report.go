package main

import (
	"bufio"
	"bytes"
	_ "embed" // the report template
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// benchmarksTemplate is docs/benchmarks.md with holes for the figures of one run: the prose
// (method, profile, scale notes) lives next to the code that fills it in.
//
//go:embed benchmarks.md.tmpl
var benchmarksTemplate string

// reportConfig is the command line of `loadgen report`.
type reportConfig struct {
	results  string // JSON lines of loadgen runs
	gobench  string // `go test -bench -benchmem` output
	profiles string // directory of <workload>.top.txt (pprof -top of the server)
	out      string // docs/benchmarks.md
	svg      string // docs/images/benchmarks.svg
	commit   string
	machine  string
}

// pathSpec is one row of the table: a measured path and the raw limit it is held against.
type pathSpec struct {
	workload string
	title    string
	limit    string  // workload of the limit; "" for none
	target   float64 // minimum ratio; 0 when the path is only reported
}

var paths = []pathSpec{
	{"cc", "client_credentials token", "raw-sign", 0.6},
	{"refresh", "refresh rotation (real Redis)", "raw-sign", 0.5},
	{"code", "code flow: authorize, login, consent, token", "", 0},
	{"introspect", "introspection of a JWT access token", "raw-verify", 0.6},
	{"verify", "verifier.Verify (in process)", "raw-verify", 0.8},
	{"jwks", "JWKS document", "", 0},
}

// optimisation is a before/after pair of Go benchmarks from the same run.
type optimisation struct {
	what          string
	before, after string
	unit          string // the metric compared: ns/op unless the benchmark reports a better one
}

var optimisations = []optimisation{
	{"access-token claims written by hand into a pooled buffer",
		"BenchmarkClaimsJSON/encoding-json", "BenchmarkClaimsJSON/append", "ns/op"},
	{"JSON strings of the fixed-shape responses written by hand",
		"BenchmarkAppendJSONString/encoding-json", "BenchmarkAppendJSONString/append", "ns/op"},
	{"Redis group commit: concurrent scripts share one pipeline (client CPU per token)",
		"BenchmarkRecordAccessTokenParallel/unbatched", "BenchmarkRecordAccessTokenParallel/batched", "cpu-ns/op"},
	{"users Secret kept while the store's revision holds (refresh re-check of the user)",
		"BenchmarkLookup/read-per-request", "BenchmarkLookup/revision-memo", "ns/op"},
	{"objects kept while the store's revision holds (whole cc handler)",
		"BenchmarkClientCredentials/read-per-request", "BenchmarkClientCredentials/revision-memo", "ns/op"},
}

func runReport(args []string, stderr io.Writer) error {
	var rc reportConfig
	fs := flag.NewFlagSet("loadgen report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&rc.results, "results", "", "JSON lines of the loadgen runs")
	fs.StringVar(&rc.gobench, "gobench", "", "output of go test -bench -benchmem")
	fs.StringVar(&rc.profiles, "profiles", "", "directory of <workload>.top.txt server profiles")
	fs.StringVar(&rc.out, "out", "docs/benchmarks.md", "Markdown report to write")
	fs.StringVar(&rc.svg, "svg", "docs/images/benchmarks.svg", "SVG chart to write")
	fs.StringVar(&rc.commit, "commit", "", "commit measured")
	fs.StringVar(&rc.machine, "machine", "", "machine description (default: from /proc/cpuinfo)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if rc.results == "" || rc.gobench == "" {
		return errors.New("report: -results and -gobench are required")
	}
	results, err := readResults(rc.results)
	if err != nil {
		return err
	}
	gob, err := os.ReadFile(rc.gobench)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	data := buildReport(rc, results, string(gob))
	var md bytes.Buffer
	tmpl, err := template.New("benchmarks").Funcs(template.FuncMap{"f0": f0, "f2": f2}).Parse(benchmarksTemplate)
	if err != nil {
		return fmt.Errorf("report: template: %w", err)
	}
	if err := tmpl.Execute(&md, data); err != nil {
		return fmt.Errorf("report: template: %w", err)
	}
	if err := writeFile(rc.out, md.Bytes()); err != nil {
		return err
	}
	return writeFile(rc.svg, chart(data.Rows))
}

func writeFile(name string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// readResults reads JSON lines; a later line for a workload replaces an earlier one.
func readResults(name string) (map[string]*Result, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: nothing to flush
	out := map[string]*Result{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var r Result
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("report: %s: %w", name, err)
		}
		out[r.Workload] = &r
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("report: %s: %w", name, err)
	}
	return out, nil
}

// Row is one line of the table.
type Row struct {
	Workload, Title   string
	RPS               float64
	Limit, LimitTitle string
	LimitRPS          float64
	Ratio, Target     float64
	Met               string
	P50, P99          float64
	// CPUPerRequest is the server's CPU µs per request (the load generator's own for an
	// in-process path); LimitCPU the limit's CPU µs per operation; CPURatio LimitCPU over
	// CPUPerRequest: the ratio in CPU time, which other tenants of the machine disturb far
	// less than the rates.
	CPUPerRequest float64
	LimitCPU      float64
	CPURatio      float64
	Errors        int64
	Concurrency   int
}

// Alg is one signature algorithm's raw go-jose sign rate.
type Alg struct {
	Name      string
	RPS       float64
	VsES256   float64
	MicrosPer float64
}

// Opt is one optimisation's before and after.
type Opt struct {
	What                  string
	Before, After         string
	BeforeV, AfterV       float64
	Unit                  string
	BeforeAlloc, AfterAll float64
	Speedup               float64
}

// Report is what the template fills in.
type Report struct {
	Date, Commit, GoVersion, Machine, Kernel string
	Rows                                     []Row
	Algs                                     []Alg
	SignRPS, VerifyRPS                       float64
	// SignCPU is the CPU µs of one raw go-jose ES256 signature, JWKSCPU the server's CPU µs per
	// JWKS request (an HTTP exchange with no work behind it), CCCPU per cc token; FloorCPU and
	// FloorRatio are the cc floor they imply (with RedisCPU for the record) and its ratio.
	SignCPU, JWKSCPU, CCCPU, RedisCPU, FloorCPU, FloorRatio, TargetCPU float64
	TLSRPS                                                             float64
	TLSvsToken                                                         float64
	CCAllocs, CCBytes, CCNs                                            float64
	CCNoMemoAllocs                                                     float64
	Opts                                                               []Opt
	GoBench                                                            string
	Profiles                                                           []Profile
	AllMet                                                             bool
	Missed                                                             []string
}

// Profile is the top of a server CPU profile taken under one workload.
type Profile struct {
	Workload, Text string
}

func buildReport(rc reportConfig, results map[string]*Result, gobench string) *Report {
	r := &Report{
		Date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Commit:    rc.commit,
		GoVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		Machine:   rc.machine,
		Kernel:    strings.TrimSpace(readString("/proc/sys/kernel/osrelease")),
		GoBench:   strings.TrimSpace(gobench),
		AllMet:    true,
	}
	if r.Machine == "" {
		r.Machine = machine()
	}
	// The date is the run's, not the report's: the last measurement's time.
	var last time.Time
	for _, res := range results {
		if t, err := time.Parse(time.RFC3339, res.Time); err == nil && t.After(last) {
			last = t
		}
	}
	if !last.IsZero() {
		r.Date = last.UTC().Format("2006-01-02 15:04 UTC")
	}
	rps := func(w string) float64 {
		if res := results[w]; res != nil {
			return res.RPS
		}
		return 0
	}
	titles := map[string]string{"raw-sign": "raw go-jose ES256 sign", "raw-verify": "raw go-jose ES256 verify"}
	for _, p := range paths {
		res := results[p.workload]
		if res == nil {
			continue
		}
		row := Row{Workload: p.workload, Title: p.title, RPS: res.RPS, Limit: p.limit, LimitTitle: titles[p.limit],
			Target: p.target, P50: res.P50, P99: res.P99, CPUPerRequest: res.ServerCPUPerRequest, Errors: res.Errors,
			Concurrency: res.Concurrency}
		if row.CPUPerRequest == 0 && inProcess(p.workload) || p.workload == "verify" {
			row.CPUPerRequest = res.LoadgenCPUPerRequest
		}
		if p.limit != "" && rps(p.limit) > 0 {
			row.LimitRPS = rps(p.limit)
			row.Ratio = res.RPS / row.LimitRPS
			row.LimitCPU = results[p.limit].LoadgenCPUPerRequest
			if row.CPUPerRequest > 0 {
				row.CPURatio = row.LimitCPU / row.CPUPerRequest
			}
		}
		switch {
		case p.target == 0:
			row.Met = "reported"
		case row.Ratio >= p.target && res.Errors == 0:
			row.Met = "yes"
		default:
			row.Met = "**no**"
			r.AllMet = false
			r.Missed = append(r.Missed, p.workload)
		}
		r.Rows = append(r.Rows, row)
	}
	r.SignRPS, r.VerifyRPS = rps("raw-sign"), rps("raw-verify")
	for _, a := range []struct{ name, w string }{{"ES256 (P-256)", "raw-sign"}, {"EdDSA (Ed25519)", "raw-sign-eddsa"}, {"RS256 (RSA 2048)", "raw-sign-rs256"}} {
		v := rps(a.w)
		if v == 0 {
			continue
		}
		alg := Alg{Name: a.name, RPS: v, MicrosPer: 1e6 / v}
		if r.SignRPS > 0 {
			alg.VsES256 = v / r.SignRPS
		}
		r.Algs = append(r.Algs, alg)
	}
	cpuOf := func(w string, server bool) float64 {
		res := results[w]
		switch {
		case res == nil:
			return 0
		case server:
			return res.ServerCPUPerRequest
		}
		return res.LoadgenCPUPerRequest
	}
	r.SignCPU, r.JWKSCPU, r.CCCPU = cpuOf("raw-sign", false), cpuOf("jwks", true), cpuOf("cc", true)
	r.RedisCPU = 4 // the record's share of the cc profile (batcher and go-redis): 5-7 % of 60-70 µs
	if r.SignCPU > 0 && r.JWKSCPU > 0 {
		r.FloorCPU = r.SignCPU + r.JWKSCPU + r.RedisCPU
		r.FloorRatio = r.SignCPU / r.FloorCPU
		r.TargetCPU = r.SignCPU / 0.6
	}
	r.TLSRPS = rps("tls-handshake")
	if cc := rps("cc"); cc > 0 && r.TLSRPS > 0 {
		r.TLSvsToken = cc / r.TLSRPS
	}

	benches := parseGoBench(gobench)
	if cc, ok := benches["BenchmarkClientCredentials/revision-memo"]; ok {
		r.CCAllocs, r.CCBytes, r.CCNs = cc["allocs/op"], cc["B/op"], cc["ns/op"]
	}
	if cc, ok := benches["BenchmarkClientCredentials/read-per-request"]; ok {
		r.CCNoMemoAllocs = cc["allocs/op"]
	}
	for _, o := range optimisations {
		b, okb := benches[o.before]
		a, oka := benches[o.after]
		if !okb || !oka || a[o.unit] == 0 {
			continue
		}
		r.Opts = append(r.Opts, Opt{What: o.what, Before: o.before, After: o.after, Unit: o.unit,
			BeforeV: b[o.unit], AfterV: a[o.unit], BeforeAlloc: b["allocs/op"], AfterAll: a["allocs/op"],
			Speedup: b[o.unit] / a[o.unit]})
	}
	if rc.profiles != "" {
		for _, w := range []string{"cc", "refresh", "introspect"} {
			if t := readString(filepath.Join(rc.profiles, w+".top.txt")); t != "" {
				r.Profiles = append(r.Profiles, Profile{Workload: w, Text: strings.TrimSpace(t)})
			}
		}
	}
	return r
}

// parseGoBench reads `go test -bench` lines into metrics by benchmark name (the -GOMAXPROCS
// suffix dropped); with -count > 1 it keeps the median of each metric.
func parseGoBench(out string) map[string]map[string]float64 {
	samples := map[string]map[string][]float64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if samples[name] == nil {
			samples[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			samples[name][f[i+1]] = append(samples[name][f[i+1]], v)
		}
	}
	out2 := map[string]map[string]float64{}
	for name, m := range samples {
		out2[name] = map[string]float64{}
		for unit, vs := range m {
			slices.Sort(vs)
			out2[name][unit] = vs[len(vs)/2]
		}
	}
	return out2
}

func readString(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return ""
	}
	return string(b)
}

// machine describes the CPU: model and count, from /proc/cpuinfo.
func machine() string {
	model := ""
	for _, line := range strings.Split(readString("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			model = strings.TrimSpace(v)
			break
		}
	}
	if model == "" {
		model = runtime.GOARCH
	}
	return fmt.Sprintf("%s, %d logical CPUs", model, runtime.NumCPU())
}

// f0 formats a rate with thousands separators.
func f0(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// f2 formats a ratio or a latency; a small non-zero ratio keeps two significant digits.
func f2(v float64) string {
	if v > 0 && v < 0.01 {
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
