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
	"sync"
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

	// batchSize is the most bytes of text lines written at once, unless one
	// line alone is longer: within what a Linux pipe holds (64 KiB), and
	// the 64 KiB up to which the standard logger reuses its buffer.
	batchSize = 32 << 10
)

// jsonEnvelope is the most bytes a JSON record takes besides the session
// object: its time (RFC 3339 with nanoseconds and a zone offset at most),
// level, msg and plugin, and its newline.
var jsonEnvelope = len(`{"time":"2006-01-02T15:04:05.999999999-07:00","level":"INFO","msg":"session","plugin":"dnsdiag","session":}` + "\n")

// sinkMode is how a line is written, decided as it is rendered.
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

// lineBatch is the lines waiting for the writer, rendered, in chunks of at
// most batchSize bytes that are each written at once. Lines are appended
// under the writer's lock, into chunks allocated beforehand: appending a
// line copies that line only, never the lines before it.
type lineBatch struct {
	chunks []*lineChunk
	lines  int
}

// lineChunk holds lines one after another in text (a text line with its
// prefix and newline, a JSON record's session object alone), and in
// entries where each ends. A line longer than batchSize has a chunk of
// its own.
type lineChunk struct {
	text    []byte
	entries []lineEntry
}

type lineEntry struct {
	end   int // of the line in text
	mode  sinkMode
	lines prometheus.Counter // log_lines_total of its session's server
}

// chunks are the lineChunks not in a batch, their buffers kept for reuse.
var chunks = sync.Pool{New: func() any { return &lineChunk{text: make([]byte, 0, batchSize)} }}

// add appends js, the session JSON of a line to write in mode.
func (b *lineBatch) add(mode sinkMode, js []byte, lines prometheus.Counter) {
	size := len(js)
	if mode == modeBatch {
		size += len(linePrefix) + len("\n")
	}
	n := len(b.chunks)
	if n == 0 || len(b.chunks[n-1].text)+size > batchSize {
		b.chunks = append(b.chunks, chunks.Get().(*lineChunk))
		n++
	}
	c := b.chunks[n-1]
	if mode == modeBatch {
		c.text = append(c.text, linePrefix...)
		c.text = append(c.text, js...)
		c.text = append(c.text, '\n')
	} else {
		c.text = append(c.text, js...)
	}
	c.entries = append(c.entries, lineEntry{end: len(c.text), mode: mode, lines: lines})
	b.lines++
}

// write writes the batch's lines in order, counts them, and empties it.
func (b *lineBatch) write() {
	for i, c := range b.chunks {
		c.write()
		if cap(c.text) <= batchSize {
			chunks.Put(c)
		} // a long line's chunk is left to the collector
		b.chunks[i] = nil
	}
	b.chunks, b.lines = b.chunks[:0], 0
}

// write writes the chunk's lines and empties it. Its text lines go out
// together in one write; a line in another mode is written by itself
// between them.
func (c *lineChunk) write() {
	run, first := 0, 0 // where the text lines not yet written start, in text and entries
	flush := func(end, upto int) {
		if end > run {
			// With no prefix and no flags, the standard logger writes the
			// text as it is: it ends with a newline. It copies the string
			// before Output returns and keeps nothing, so the chunk is
			// lent, not copied.
			_ = golog.Output(1, unsafe.String(&c.text[run], end-run))
		}
		for i := first; i < upto; i++ {
			c.entries[i].lines.Inc()
		}
		run, first = end, upto
	}
	begin := 0
	for i, e := range c.entries {
		if e.mode != modeBatch {
			flush(begin, i)
			js := c.text[begin:e.end]
			if e.mode == modeJSON {
				clog.InfoAttrs("session", slog.String("plugin", "dnsdiag"), slog.Any("session", json.RawMessage(js)))
			} else {
				log.Info(string(js))
			}
			e.lines.Inc()
			run, first = e.end, i+1
		}
		begin = e.end
	}
	flush(begin, len(c.entries))
	clear(c.entries)
	c.text, c.entries = c.text[:0], c.entries[:0]
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
