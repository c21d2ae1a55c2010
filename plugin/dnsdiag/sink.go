package dnsdiag

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	golog "log"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/prometheus/client_golang/prometheus"
)

// The sink: how session lines and reports reach CoreDNS's log, in either
// of its formats.
//
// Text (the default): a session is the line `[INFO] plugin/dnsdiag: {...}`,
// the bytes log.Info writes. Lines queued together are written with one
// Write to the standard logger's output (one write(2) on a pipe or file),
// through the standard logger, so that clog.SetOutput and whatever tests
// redirect are honoured and its lock orders them with every other log
// line. That is byte-identical only while the standard logger adds nothing
// to each line (no prefix, no flags: CoreDNS sets none); otherwise every
// line goes through log.Info, one by one. Like the log plugin's query
// lines, batched session lines do not pass clog's listeners.
//
// JSON (-log-format json): a session is one record of CoreDNS's JSON
// schema, its members as JSON, not as an escaped string:
//
//	{"time":"...","level":"INFO","msg":"session","plugin":"dnsdiag","session":{"Status":"Failed",...}}
//
// and a report a WARN record whose "report" member is the report object.

const (
	linePrefix = "[INFO] plugin/dnsdiag: "

	// defaultMaxLine keeps a line whole through containerd and Docker,
	// which split longer lines into several log entries.
	defaultMaxLine = 16 << 10
	// minMaxLine leaves room for the summary and a few message headers.
	minMaxLine = 2048
	maxMaxLine = 64 << 20

	// batchSize is the bytes after which the sink writes what it gathered.
	// With a default-bounded line on top a batch stays within 48 KiB: what a
	// Linux pipe holds, and under the 64 KiB up to which the standard
	// logger reuses its buffer.
	batchSize = 32 << 10
)

// jsonEnvelope is the most bytes a JSON record takes besides the session
// object: its time (RFC 3339 with nanoseconds and a zone offset at most),
// level, msg and plugin, and its newline.
var jsonEnvelope = len(`{"time":"2006-01-02T15:04:05.999999999-07:00","level":"INFO","msg":"session","plugin":"dnsdiag","session":}` + "\n")

// sinkMode is how the sink writes, decided when a batch starts.
type sinkMode uint8

const (
	modeBatch sinkMode = iota // text, lines gathered for one write
	modeText                  // text through log.Info, line by line
	modeJSON                  // one JSON record per session
)

func currentMode() sinkMode {
	switch {
	case clog.IsJSON():
		return modeJSON
	case golog.Flags() != 0 || golog.Prefix() != "":
		return modeText
	}
	return modeBatch
}

// sink renders and writes the log writer's lines. Its buffers are reused
// from line to line and from batch to batch.
type sink struct {
	lb      lineBuf
	mode    sinkMode
	header  int // stdHeader, when the batch started
	batch   []byte
	written []prometheus.Counter // log_lines_total of the lines in batch
}

// add renders s within its line bound and writes it, or adds it to the
// batch, then recycles it.
func (k *sink) add(s *session) {
	if len(k.written) == 0 {
		k.mode, k.header = currentMode(), stdHeader()
	}
	limit := lineLimit(s.maxLine, k.mode, k.header)
	switch js := k.lb.render(s, limit); k.mode {
	case modeBatch:
		k.batch = append(k.batch, linePrefix...)
		k.batch = append(k.batch, js...)
		k.batch = append(k.batch, '\n')
		k.written = append(k.written, s.metrics.lines)
	case modeJSON:
		clog.InfoAttrs("session", slog.String("plugin", "dnsdiag"), slog.Any("session", json.RawMessage(js)))
		s.metrics.lines.Inc()
	default:
		log.Info(string(js))
		s.metrics.lines.Inc()
	}
	s.recycle()
}

// full reports whether the batch should be written before another line
// is added.
func (k *sink) full() bool { return len(k.batch) >= batchSize }

// write writes the batch, if any, and counts its lines.
func (k *sink) write() {
	if len(k.batch) == 0 {
		return
	}
	// With no prefix and no flags, the standard logger writes the text as
	// it is: it ends with a newline. It copies the string before Output
	// returns and keeps nothing, so the batch is lent, not copied.
	_ = golog.Output(1, unsafe.String(unsafe.SliceData(k.batch), len(k.batch)))
	for i, c := range k.written {
		c.Inc()
		k.written[i] = nil
	}
	k.batch, k.written = k.batch[:0], k.written[:0]
}

// lineLimit is the most bytes the JSON of a session may take for its
// line to fit maxLine (0: the default, -1: no bound) in mode, header being
// stdHeader in text mode; 0 for no bound.
func lineLimit(maxLine int, mode sinkMode, header int) int {
	switch {
	case maxLine < 0:
		return 0
	case maxLine == 0:
		maxLine = defaultMaxLine
	}
	if mode == modeJSON {
		return maxLine - jsonEnvelope
	}
	return maxLine - header - len(linePrefix) - len("\n")
}

// stdHeader is the most bytes the standard logger puts before a line with
// its present prefix and flags: none in CoreDNS, the date and time in
// tests. A file name counts as a long path.
func stdHeader() int {
	f, n := golog.Flags(), len(golog.Prefix())
	if f&golog.Ldate != 0 {
		n += len("2006/01/02 ")
	}
	if f&(golog.Ltime|golog.Lmicroseconds) != 0 {
		n += len("15:04:05 ")
	}
	if f&golog.Lmicroseconds != 0 {
		n += len(".000000")
	}
	if f&(golog.Lshortfile|golog.Llongfile) != 0 {
		n += 256
	}
	return n
}

// parseMaxLine reads the arguments of `max_line SIZE|off`: SIZE in bytes,
// or with a k or m suffix in KiB or MiB. off is -1.
func parseMaxLine(args []string) (int, error) {
	if len(args) == 1 && args[0] == "off" {
		return -1, nil
	}
	if len(args) == 1 {
		num, unit := args[0], uint64(1)
		switch {
		case strings.HasSuffix(num, "k"), strings.HasSuffix(num, "K"):
			num, unit = num[:len(num)-1], 1<<10
		case strings.HasSuffix(num, "m"), strings.HasSuffix(num, "M"):
			num, unit = num[:len(num)-1], 1<<20
		}
		if n, err := strconv.ParseUint(num, 10, 32); err == nil && n*unit >= minMaxLine && n*unit <= maxMaxLine {
			return int(n * unit), nil
		}
	}
	return 0, fmt.Errorf("want the most bytes of a line, from %d to 64m, such as 16384 or 64k, or off, got %q", minMaxLine, strings.Join(args, " "))
}

// writeReport writes a report as report.AppendJSON renders it,
// {"Report":{...}}: in text mode as the line
// `[WARNING] plugin/dnsdiag: {"Report":{...}}`, in JSON mode as a WARN
// record whose "report" member is the report object.
func writeReport(b []byte) {
	if l := jsonLogger(); l != nil {
		r := b
		if inner, ok := bytes.CutPrefix(b, []byte(`{"Report":`)); ok && bytes.HasSuffix(inner, []byte("}")) {
			r = inner[:len(inner)-1]
		}
		l.LogAttrs(context.Background(), slog.LevelWarn, "report", slog.String("plugin", "dnsdiag"), slog.Any("report", json.RawMessage(r)))
		return
	}
	log.Warning(string(b))
}

// clogPackage is the import path of CoreDNS's log package.
var clogPackage = reflect.TypeFor[clog.P]().PkgPath()

// jsonLogger is CoreDNS's JSON logger when -log-format json is on, else
// nil. clog has no function for a record above INFO with attributes, so
// the logger is taken from where clog.Configure put it: it routes the
// standard logger to the JSON backend through a writer whose only field
// is the *slog.Logger (internals.go, 4). If that is not so, nil: the report
// is then written through log.Warning, as an escaped string in msg.
func jsonLogger() *slog.Logger {
	if !clog.IsJSON() {
		return nil
	}
	v := reflect.ValueOf(golog.Writer())
	if v.Kind() != reflect.Struct {
		return nil
	}
	t := v.Type()
	if t.PkgPath() != clogPackage || t.NumField() != 1 || t.Field(0).Type != reflect.TypeFor[*slog.Logger]() {
		return nil
	}
	return (*slog.Logger)(v.Field(0).UnsafePointer())
}
