package dnsdiag

import (
	"encoding/json"
	"strings"
	"testing"
)

// decodedJSONString is what a JSON decoder must read back from
// appendJSONString(s): s with every byte of invalid UTF-8 replaced by U+FFFD
// (ranging over a string yields RuneError for each such byte).
func decodedJSONString(s string) string {
	var sb strings.Builder
	for _, r := range s {
		sb.WriteRune(r)
	}
	return sb.String()
}

func checkJSONString(t *testing.T, s string) []byte {
	t.Helper()
	out := appendJSONString(nil, s)
	if !json.Valid(out) {
		t.Fatalf("appendJSONString(%q) = %s: not valid JSON", s, out)
	}
	var got string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("appendJSONString(%q) = %s: %v", s, out, err)
	}
	if want := decodedJSONString(s); got != want {
		t.Fatalf("appendJSONString(%q) decodes to %q, want %q", s, got, want)
	}
	return out
}

func TestAppendJSONString(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"", `""`},
		{"example.org.", `"example.org."`},
		{`say "hi"`, `"say \"hi\""`},
		{`a\b`, `"a\\b"`},
		{"l1\nl2\r\tx", `"l1\nl2\r\tx"`},
		{"\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f" + `"`},
		{"<a href='x'>&amp;</a>", `"<a href='x'>&amp;</a>"`},
		{"café 日本 🦆", `"café 日本 🦆"`},
		{"\ufffd", "\"\ufffd\""}, // a valid U+FFFD passes through as is
		{"a\xffb", `"a\ufffdb"`},
		{"\xe6\x97", `"\ufffd\ufffd"`},                 // truncated 3-byte sequence
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},       // encoded surrogate
		{"\xc0\xaf", `"\ufffd\ufffd"`},                 // overlong encoding
		{"x\xf0\x9f\xa6", `"x\ufffd\ufffd\ufffd"`},     // truncated at the end
		{"\x80label\xff.\"", `"\ufffdlabel\ufffd.\""`}, // mixed
	} {
		if got := checkJSONString(t, tc.in); string(got) != tc.want {
			t.Errorf("appendJSONString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestAppendJSONStringAppends(t *testing.T) {
	b := []byte(`{"k":`)
	b = appendJSONString(b, "v\n")
	b = append(b, `,"b":`...)
	b = appendJSONString(b, "w\xff")
	b = append(b, '}')
	if want := `{"k":"v\n","b":"w\ufffd"}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
}

func TestAppendJSONStringNoAlloc(t *testing.T) {
	s := "text \"quoted\" \x01 café \xff 🦆"
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { appendJSONString(buf, s) }); n != 0 {
		t.Errorf("appendJSONString allocates %v times", n)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `"\`, "\x00\n\x1f", "café", "\xff\xfe", "\xed\xa0\x80", "\xf0\x9f\xa6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkJSONString(t, s)
	})
}
