package hints

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestAppendJSON(t *testing.T) {
	up := netip.MustParseAddrPort("[2001:db8::53]:53")
	cases := []struct {
		h    Hint
		want map[string]any
	}{
		{Hint{Code: RetransmitAfterAnswer, Text: textAfterAnswer, Earlier: 7, SamePort: true, EarlierRcode: dns.RcodeNameError, Ago: 4999500 * time.Microsecond},
			map[string]any{"Code": "retransmit_after_answer", "Text": textAfterAnswer, "EarlierSession": 7.0, "SamePort": true, "EarlierRcode": "NXDOMAIN", "AgoMs": 4999.5}},
		{Hint{Code: RetransmitAfterAnswer, Text: textAfterAnswer, Earlier: 7, EarlierRcode: 3841},
			map[string]any{"Code": "retransmit_after_answer", "Text": textAfterAnswer, "EarlierSession": 7.0, "SamePort": false, "EarlierRcode": "RCODE3841", "AgoMs": 0.0}},
		{Hint{Code: RetransmitUnanswered, Text: textUnanswered, Earlier: 8, InFlight: true, Running: time.Second, Waiting: WaitingUpstream, Attempts: 2, Upstream: up},
			map[string]any{"Code": "retransmit_unanswered", "Text": textUnanswered, "EarlierSession": 8.0, "SamePort": false, "InFlight": true, "RunningMs": 1000.0, "Waiting": "upstream", "Attempts": 2.0, "Upstream": "[2001:db8::53]:53"}},
		{Hint{Code: RetransmitUnanswered, Text: textUnanswered, Earlier: 8, InFlight: true, Running: time.Millisecond},
			map[string]any{"Code": "retransmit_unanswered", "Text": textUnanswered, "EarlierSession": 8.0, "SamePort": false, "InFlight": true, "RunningMs": 1.0, "Attempts": 0.0}},
		{Hint{Code: ParallelAAAAA, Text: textPairQuery, Lost: LostQuery, Other: 9},
			map[string]any{"Code": "parallel_a_aaaa", "Text": textPairQuery, "Lost": "query", "OtherSession": 9.0}},
		{Hint{Code: SearchExpansion, Text: textSearch, Count: 3, Suffixes: []string{"a\"b\\c", "\x00\xff\xfe", "ok"}},
			map[string]any{"Code": "search_expansion", "Text": textSearch, "Count": 3.0, "Suffixes": []any{"a\"b\\c", "\x00\ufffd\ufffd", "ok"}}},
		{Hint{Code: TruncatedNoTCPRetry, Text: textTruncated, Window: 3 * time.Second},
			map[string]any{"Code": "truncated_no_tcp_retry", "Text": textTruncated, "WindowMs": 3000.0}},
		{Hint{Code: UpstreamTCPFailed, Text: textUpstreamTCP, Upstream: privateZone, Evidence: EvidenceUDPAnswered, UDPAgo: 1500 * time.Microsecond},
			map[string]any{"Code": "upstream_tcp_failed", "Text": textUpstreamTCP, "Upstream": "100.100.2.136:53", "Evidence": "udp_answered", "UDPAnsweredAgoMs": 1.5}},
		{Hint{Code: UpstreamTCPFailed, Text: textUpstreamTCP, Upstream: privateZone, Evidence: EvidenceClientTCP},
			map[string]any{"Code": "upstream_tcp_failed", "Text": textUpstreamTCP, "Upstream": "100.100.2.136:53", "Evidence": "client_tcp"}},
	}
	for _, c := range cases {
		b := c.h.AppendJSON([]byte("prefix"), jsonQuote)
		if string(b[:6]) != "prefix" {
			t.Fatalf("AppendJSON dropped what b held: %q", b)
		}
		var got map[string]any
		if err := json.Unmarshal(b[6:], &got); err != nil {
			t.Fatalf("%s: invalid JSON %q: %v", c.h.Code, b[6:], err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %v\nwant %v", c.h.Code, got, c.want)
		}
	}
}
