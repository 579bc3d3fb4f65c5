package clientip

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	trustedPeer   = "10.0.0.1:40000"
	untrustedPeer = "203.0.113.9:5555"
)

func mustResolver(t testing.TB) *Resolver {
	t.Helper()
	r, err := New([]string{"10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func request(peer string, headers ...[2]string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "http://gw.example/x", nil)
	req.RemoteAddr = peer
	for _, h := range headers {
		req.Header.Add(h[0], h[1])
	}
	return req
}

func xff(v string) [2]string { return [2]string{"X-Forwarded-For", v} }
func fwd(v string) [2]string { return [2]string{"Forwarded", v} }

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		wantErr string
	}{
		{name: "empty_trusts_nobody", in: nil},
		{name: "cidrs_and_addresses", in: []string{"10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"}},
		{name: "mapped_prefix", in: []string{"::ffff:10.0.0.0/104"}},
		{name: "garbage", in: []string{"10.0.0.0/8", "not-an-ip"}, wantErr: `trusted proxy 1 "not-an-ip"`},
		{name: "host_bits_set", in: []string{"10.0.0.1/8"}, wantErr: "did you mean 10.0.0.0/8"},
		{name: "bad_bits", in: []string{"10.0.0.0/33"}, wantErr: `trusted proxy 0 "10.0.0.0/33"`},
		{name: "zone", in: []string{"fe80::1%eth0"}, wantErr: "zones are not allowed"},
		{name: "whitespace", in: []string{" 10.0.0.1"}, wantErr: "whitespace"},
		{name: "empty_entry", in: []string{""}, wantErr: "empty entry"},
		{name: "every_bad_entry_named", in: []string{"x", "10.0.0.0/8", "y"}, wantErr: `trusted proxy 2 "y"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New(%q) error = %v", tc.in, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestTrusted(t *testing.T) {
	r := mustResolver(t)
	mapped, _ := New([]string{"::ffff:10.0.0.0/104"})
	tests := []struct {
		name string
		r    *Resolver
		addr string
		want bool
	}{
		{"in_prefix", r, "10.200.0.1", true},
		{"bare_address", r, "192.168.1.7", true},
		{"bare_address_neighbour", r, "192.168.1.8", false},
		{"v6_prefix", r, "2001:db8::5", true},
		{"v6_loopback", r, "::1", true},
		{"mapped_v4_unmapped_before_match", r, "::ffff:10.1.1.1", true},
		{"mapped_entry_matches_v4", mapped, "10.9.9.9", true},
		{"outside", r, "203.0.113.9", false},
		{"nil_resolver_trusts_nobody", nil, "10.0.0.1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Trusted(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Errorf("Trusted(%s) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	r := mustResolver(t)
	tests := []struct {
		name    string
		peer    string
		headers [][2]string
		want    string
		wantErr error
	}{
		{name: "no_headers_untrusted_peer", peer: untrustedPeer, want: "203.0.113.9"},
		{name: "no_headers_trusted_peer", peer: trustedPeer, want: "10.0.0.1"},
		{name: "spoofed_XFF_from_untrusted_peer_ignored", peer: untrustedPeer, headers: [][2]string{xff("1.2.3.4")}, want: "203.0.113.9"},
		{name: "spoofed_trusted_XFF_from_untrusted_peer_ignored", peer: untrustedPeer, headers: [][2]string{xff("10.0.0.5")}, want: "203.0.113.9"},
		{name: "spoofed_Forwarded_from_untrusted_peer_ignored", peer: untrustedPeer, headers: [][2]string{fwd("for=1.2.3.4")}, want: "203.0.113.9"},
		{name: "malformed_XFF_from_untrusted_peer_ignored", peer: untrustedPeer, headers: [][2]string{xff("garbage")}, want: "203.0.113.9"},
		{name: "XFF_one_hop", peer: trustedPeer, headers: [][2]string{xff("198.51.100.7")}, want: "198.51.100.7"},
		{name: "XFF_chain_through_trusted_proxies", peer: trustedPeer, headers: [][2]string{xff("198.51.100.7, 10.1.1.1, 192.168.1.7")}, want: "198.51.100.7"},
		{name: "XFF_spoofed_prefix_before_real_client", peer: trustedPeer, headers: [][2]string{xff("1.1.1.1, 10.9.9.9, 198.51.100.7, 10.1.1.1")}, want: "198.51.100.7"},
		{name: "XFF_garbage_left_of_client_not_read", peer: trustedPeer, headers: [][2]string{xff("<script>, unknown, 198.51.100.7")}, want: "198.51.100.7"},
		{name: "XFF_multiple_header_lines", peer: trustedPeer, headers: [][2]string{xff("1.1.1.1"), xff("198.51.100.7, 10.1.1.1")}, want: "198.51.100.7"},
		{name: "XFF_multiple_header_lines_last_is_nearest", peer: trustedPeer, headers: [][2]string{xff("198.51.100.7"), xff("10.1.1.1")}, want: "198.51.100.7"},
		{name: "XFF_all_trusted_gives_leftmost", peer: trustedPeer, headers: [][2]string{xff("10.3.3.3, 10.2.2.2")}, want: "10.3.3.3"},
		{name: "XFF_empty_elements_ignored", peer: trustedPeer, headers: [][2]string{xff(", 198.51.100.7,,")}, want: "198.51.100.7"},
		{name: "XFF_empty_header_is_peer", peer: trustedPeer, headers: [][2]string{xff("")}, want: "10.0.0.1"},
		{name: "XFF_with_port", peer: trustedPeer, headers: [][2]string{xff("198.51.100.7:1234")}, want: "198.51.100.7"},
		{name: "XFF_ipv6", peer: trustedPeer, headers: [][2]string{xff("2001:db9::7")}, want: "2001:db9::7"},
		{name: "XFF_ipv6_brackets_port", peer: trustedPeer, headers: [][2]string{xff("[2001:db9::7]:443")}, want: "2001:db9::7"},
		{name: "XFF_ipv6_brackets", peer: trustedPeer, headers: [][2]string{xff("[2001:db9::7]")}, want: "2001:db9::7"},
		{name: "XFF_mapped_ipv4_unmapped", peer: trustedPeer, headers: [][2]string{xff("::ffff:198.51.100.7")}, want: "198.51.100.7"},
		{name: "XFF_mapped_trusted_hop_skipped", peer: trustedPeer, headers: [][2]string{xff("198.51.100.7, ::ffff:10.1.1.1")}, want: "198.51.100.7"},
		{name: "mapped_ipv4_peer_unmapped", peer: "[::ffff:10.0.0.1]:40000", headers: [][2]string{xff("198.51.100.7")}, want: "198.51.100.7"},
		{name: "peer_without_port", peer: "203.0.113.9", want: "203.0.113.9"},
		{name: "peer_with_zone", peer: "[fe80::1%eth0]:80", want: "fe80::1"},
		{name: "malformed_XFF_from_trusted_peer", peer: trustedPeer, headers: [][2]string{xff("198.51.100.7, not-an-ip")}, wantErr: ErrMalformed},
		{name: "malformed_XFF_behind_trusted_hop", peer: trustedPeer, headers: [][2]string{xff("1.2.3.4 5.6.7.8, 10.1.1.1")}, wantErr: ErrMalformed},
		{name: "XFF_leading_zero_octets_rejected", peer: trustedPeer, headers: [][2]string{xff("010.0.0.1")}, wantErr: ErrMalformed},
		{name: "XFF_zone_rejected", peer: trustedPeer, headers: [][2]string{xff("fe80::1%eth0")}, wantErr: ErrMalformed},
		{name: "XFF_unknown_reached", peer: trustedPeer, headers: [][2]string{xff("unknown, 10.1.1.1")}, wantErr: ErrNoAddress},
		{name: "Forwarded_ipv4", peer: trustedPeer, headers: [][2]string{fwd("for=198.51.100.7;proto=https")}, want: "198.51.100.7"},
		{name: "Forwarded_quoted_with_port", peer: trustedPeer, headers: [][2]string{fwd(`for="198.51.100.7:4711"`)}, want: "198.51.100.7"},
		{name: "Forwarded_ipv6", peer: trustedPeer, headers: [][2]string{fwd(`for="[2001:db9:cafe::17]:4711"`)}, want: "2001:db9:cafe::17"},
		{name: "Forwarded_ipv6_no_port", peer: trustedPeer, headers: [][2]string{fwd(`For="[2001:db9::17]"`)}, want: "2001:db9::17"},
		{name: "Forwarded_obfuscated_port", peer: trustedPeer, headers: [][2]string{fwd(`for="198.51.100.7:_p1"`)}, want: "198.51.100.7"},
		{name: "Forwarded_chain", peer: trustedPeer, headers: [][2]string{fwd(`for=1.1.1.1, for=198.51.100.7;by=10.1.1.1, for=10.1.1.1`)}, want: "198.51.100.7"},
		{name: "Forwarded_chain_ows_around_separators", peer: trustedPeer, headers: [][2]string{fwd(`for=198.51.100.7 ; proto=https , for=10.1.1.1`)}, want: "198.51.100.7"},
		{name: "Forwarded_multiple_lines", peer: trustedPeer, headers: [][2]string{fwd("for=198.51.100.7"), fwd("for=10.1.1.1")}, want: "198.51.100.7"},
		{name: "Forwarded_quoted_pair", peer: trustedPeer, headers: [][2]string{fwd(`for="198.51.100.\7"`)}, want: "198.51.100.7"},
		{name: "Forwarded_comma_inside_quotes_is_not_a_separator", peer: trustedPeer, headers: [][2]string{fwd(`by="a, for=1.1.1.1";for=198.51.100.7`)}, want: "198.51.100.7"},
		{name: "Forwarded_all_trusted_gives_leftmost", peer: trustedPeer, headers: [][2]string{fwd(`for=10.3.3.3, for=10.2.2.2`)}, want: "10.3.3.3"},
		{name: "Forwarded_unknown", peer: trustedPeer, headers: [][2]string{fwd("for=unknown")}, wantErr: ErrNoAddress},
		{name: "Forwarded_obfuscated_identifier", peer: trustedPeer, headers: [][2]string{fwd("for=_hidden, for=10.1.1.1")}, wantErr: ErrNoAddress},
		{name: "Forwarded_element_without_for", peer: trustedPeer, headers: [][2]string{fwd("proto=https")}, wantErr: ErrNoAddress},
		{name: "Forwarded_unquoted_ipv6_malformed", peer: trustedPeer, headers: [][2]string{fwd("for=[2001:db9::17]")}, wantErr: ErrMalformed},
		{name: "Forwarded_ipv6_without_brackets_malformed", peer: trustedPeer, headers: [][2]string{fwd(`for="2001:db9::17"`)}, wantErr: ErrMalformed},
		{name: "Forwarded_unclosed_quote_swallows_proxy_entry", peer: trustedPeer, headers: [][2]string{fwd(`for="1.1.1.1, for=198.51.100.7`)}, wantErr: ErrMalformed},
		{name: "Forwarded_duplicate_for", peer: trustedPeer, headers: [][2]string{fwd(`for=1.1.1.1;for=198.51.100.7`)}, wantErr: ErrMalformed},
		{name: "Forwarded_space_around_equals", peer: trustedPeer, headers: [][2]string{fwd(`for = 198.51.100.7`)}, wantErr: ErrMalformed},
		{name: "Forwarded_empty_value", peer: trustedPeer, headers: [][2]string{fwd(`for=;proto=https`)}, wantErr: ErrMalformed},
		{name: "Forwarded_control_char_in_quotes", peer: trustedPeer, headers: [][2]string{fwd("for=\"1.1.1.1\x00\"")}, wantErr: ErrMalformed},
		{name: "Forwarded_bad_port", peer: trustedPeer, headers: [][2]string{fwd(`for="198.51.100.7:123456"`)}, wantErr: ErrMalformed},
		{name: "both_headers_agree", peer: trustedPeer, headers: [][2]string{xff("198.51.100.7, 10.1.1.1"), fwd(`for="198.51.100.7"`)}, want: "198.51.100.7"},
		{name: "spoofed_Forwarded_through_XFF_only_proxy_conflicts", peer: trustedPeer, headers: [][2]string{fwd("for=1.1.1.1"), xff("198.51.100.7")}, wantErr: ErrConflict},
		{name: "spoofed_XFF_through_Forwarded_only_proxy_conflicts", peer: trustedPeer, headers: [][2]string{xff("1.1.1.1"), fwd("for=198.51.100.7")}, wantErr: ErrConflict},
		{name: "malformed_Forwarded_with_good_XFF", peer: trustedPeer, headers: [][2]string{fwd(`for="`), xff("198.51.100.7")}, wantErr: ErrMalformed},
		{name: "bad_peer", peer: "not-an-address", wantErr: ErrBadPeer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.ClientIP(request(tc.peer, tc.headers...))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ClientIP() error = %v, want %v", err, tc.wantErr)
			}
			var want netip.Addr
			if tc.want != "" {
				want = netip.MustParseAddr(tc.want)
			}
			if diff := cmp.Diff(want.String(), got.String()); diff != "" {
				t.Errorf("ClientIP() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientIPNilResolver(t *testing.T) {
	var r *Resolver
	got, err := r.ClientIP(request("10.0.0.1:1", xff("1.2.3.4")))
	if err != nil || got != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("nil Resolver ClientIP = %v, %v; want the peer", got, err)
	}
}

func TestProto(t *testing.T) {
	r := mustResolver(t)
	xfp := func(v string) [2]string { return [2]string{"X-Forwarded-Proto", v} }
	tests := []struct {
		name    string
		peer    string
		tls     bool
		headers [][2]string
		want    string
	}{
		{name: "plain", peer: untrustedPeer, want: "http"},
		{name: "tls", peer: untrustedPeer, tls: true, want: "https"},
		{name: "tls_wins_over_header", peer: trustedPeer, tls: true, headers: [][2]string{xfp("http")}, want: "https"},
		{name: "spoofed_X-Forwarded-Proto_from_untrusted_peer", peer: untrustedPeer, headers: [][2]string{xfp("https")}, want: "http"},
		{name: "trusted_https", peer: trustedPeer, headers: [][2]string{xfp("https")}, want: "https"},
		{name: "trusted_upper_case", peer: trustedPeer, headers: [][2]string{xfp("HTTPS")}, want: "https"},
		{name: "trusted_http", peer: trustedPeer, headers: [][2]string{xfp("http")}, want: "http"},
		{name: "trusted_other_value", peer: trustedPeer, headers: [][2]string{xfp("wss")}, want: "http"},
		{name: "trusted_rightmost_wins", peer: trustedPeer, headers: [][2]string{xfp("https, http")}, want: "http"},
		{name: "trusted_rightmost_line_wins", peer: trustedPeer, headers: [][2]string{xfp("http"), xfp("https")}, want: "https"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := request(tc.peer, tc.headers...)
			if tc.tls {
				req.TLS = &tls.ConnectionState{}
			}
			if got := r.Proto(req); got != tc.want {
				t.Errorf("Proto() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHost(t *testing.T) {
	r := mustResolver(t)
	xfh := func(v string) [2]string { return [2]string{"X-Forwarded-Host", v} }
	tests := []struct {
		name    string
		peer    string
		headers [][2]string
		want    string
	}{
		{name: "no_header", peer: trustedPeer, want: "gw.example"},
		{name: "spoofed_X-Forwarded-Host_from_untrusted_peer", peer: untrustedPeer, headers: [][2]string{xfh("admin.internal")}, want: "gw.example"},
		{name: "trusted", peer: trustedPeer, headers: [][2]string{xfh("dify.example.com")}, want: "dify.example.com"},
		{name: "trusted_with_port", peer: trustedPeer, headers: [][2]string{xfh("dify.example.com:8443")}, want: "dify.example.com:8443"},
		{name: "trusted_rightmost", peer: trustedPeer, headers: [][2]string{xfh("evil.com, dify.example.com")}, want: "dify.example.com"},
		{name: "trusted_invalid_falls_back", peer: trustedPeer, headers: [][2]string{xfh("evil.com/path")}, want: "gw.example"},
		{name: "trusted_userinfo_falls_back", peer: trustedPeer, headers: [][2]string{xfh("a@evil.com")}, want: "gw.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Host(request(tc.peer, tc.headers...)); got != tc.want {
				t.Errorf("Host() = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzClientIP(f *testing.F) {
	for _, s := range [][2]string{
		{"198.51.100.7", ""},
		{"1.1.1.1, 10.0.0.2", "for=198.51.100.7"},
		{"", `for="[2001:db8::1]:80";proto=https, for=10.1.1.1`},
		{"unknown", "for=_x"},
		{"[::1]:80,,", `for="1.1.1.1`},
		{"::ffff:10.0.0.1", `by="a, b";for=1.1.1.1`},
		{"garbage", "for=\"\\"},
	} {
		f.Add(s[0], s[1])
	}
	r, err := New([]string{"10.0.0.0/8", "2001:db8::/32"})
	if err != nil {
		f.Fatal(err)
	}
	real := netip.MustParseAddr("198.51.100.7")
	f.Fuzz(func(t *testing.T, xffVal, fwdVal string) {
		// From an untrusted peer the headers never matter.
		got, err := r.ClientIP(request(untrustedPeer, xff(xffVal), fwd(fwdVal)))
		if err != nil || got != netip.MustParseAddr("203.0.113.9") {
			t.Fatalf("untrusted peer: ClientIP = %v, %v; want the peer", got, err)
		}
		// From a trusted peer: no panic; a result is a clean address.
		got, err = r.ClientIP(request(trustedPeer, xff(xffVal), fwd(fwdVal)))
		if err == nil && (!got.IsValid() || got.Zone() != "" || got.Is4In6()) {
			t.Fatalf("trusted peer: ClientIP = %v, not a clean address", got)
		}
		// Whatever the client sent, the entry a trusted proxy appended wins.
		got, err = r.ClientIP(request(trustedPeer, xff(xffVal+", 198.51.100.7")))
		if err != nil || got != real {
			t.Fatalf("XFF %q + proxy entry: ClientIP = %v, %v; want %v", xffVal, got, err, real)
		}
		got, err = r.ClientIP(request(trustedPeer, xff(xffVal), xff("198.51.100.7")))
		if err != nil || got != real {
			t.Fatalf("XFF %q + proxy line: ClientIP = %v, %v; want %v", xffVal, got, err, real)
		}
		// Forwarded: the proxy's entry or an error, never the client's choice.
		for _, hs := range [][][2]string{
			{fwd(fwdVal + ", for=198.51.100.7")},
			{fwd(fwdVal + `, for="198.51.100.7"`)},
			{fwd(fwdVal), fwd("for=198.51.100.7")},
		} {
			got, err = r.ClientIP(request(trustedPeer, hs...))
			if err == nil && got != real {
				t.Fatalf("Forwarded %q: ClientIP = %v, want %v or an error", hs, got, real)
			}
		}
		// Proto and Host never take an untrusted peer's word.
		req := request(untrustedPeer, [2]string{"X-Forwarded-Proto", xffVal}, [2]string{"X-Forwarded-Host", fwdVal})
		if p, h := r.Proto(req), r.Host(req); p != "http" || h != "gw.example" {
			t.Fatalf("untrusted peer: Proto, Host = %q, %q", p, h)
		}
	})
}

func BenchmarkClientIP(b *testing.B) {
	r := mustResolver(b)
	for _, bc := range []struct {
		name string
		req  *http.Request
	}{
		{"untrusted_peer", request(untrustedPeer, xff("1.2.3.4"))},
		{"trusted_no_headers", request(trustedPeer)},
		{"xff_three_hops", request(trustedPeer, xff("198.51.100.7, 10.1.1.1, 192.168.1.7"))},
		{"forwarded_two_hops", request(trustedPeer, fwd(`for="198.51.100.7:4711";proto=https, for=10.1.1.1`))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.ClientIP(bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Behind Google's external Application Load Balancer, the connection comes
// from its front ends (35.191.0.0/16, 130.211.0.0/22) and X-Forwarded-For
// reads "<what the client sent>, <client>, <load balancer's address>". With
// both trusted, the client is the address the load balancer saw; the
// attack: a client writing its own X-Forwarded-For to pass an IP allow list.
func TestBehindGoogleLoadBalancer(t *testing.T) {
	r, err := New([]string{"35.191.0.0/16", "130.211.0.0/22", "34.117.8.9"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://dify.example.com/", nil)
	req.RemoteAddr = "35.191.12.34:51234"
	req.Header.Set("X-Forwarded-For", "10.0.0.1, 198.51.100.7, 34.117.8.9") // 10.0.0.1: spoofed by the client
	got, err := r.ClientIP(req)
	if err != nil || got != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("ClientIP = %v, %v; want 198.51.100.7, the address the load balancer saw", got, err)
	}
	// The load balancer's address not trusted: it is taken for the client.
	r2, _ := New([]string{"35.191.0.0/16", "130.211.0.0/22"})
	if got, _ := r2.ClientIP(req); got != netip.MustParseAddr("34.117.8.9") {
		t.Fatalf("without the LB's address trusted: %v, want 34.117.8.9", got)
	}
}
