package main

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

// wrkOutput is wrk 4.1's report with --latency.
const wrkOutput = `Running 1s test @ http://127.0.0.1:18081/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   805.77us    1.41ms  10.74ms   87.63%
    Req/Sec    14.95k     2.68k   22.39k    72.73%
  Latency Distribution
     50%  180.00us
     75%  750.00us
     90%    2.67ms
     99%    6.74ms
  32674 requests in 1.10s, 5.58MB read
`

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name string
		tail string
		want wrkResult
	}{
		{
			name: "clean run",
			tail: "Requests/sec:  29743.17\nTransfer/sec:      5.08MB\n",
			want: wrkResult{RPS: 29743.17, P50: 180 * time.Microsecond, P99: 6740 * time.Microsecond, Requests: 32674},
		},
		{
			name: "errors and non-2xx responses are counted",
			tail: "  Socket errors: connect 1, read 3, write 0, timeout 2\n  Non-2xx or 3xx responses: 12\nRequests/sec:  100.00\n",
			want: wrkResult{RPS: 100, P50: 180 * time.Microsecond, P99: 6740 * time.Microsecond, Requests: 32674, Non2xx: 12, Errors: 6},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWrk(wrkOutput + tc.tail)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("parseWrk = %+v, want %+v", got, tc.want)
			}
		})
	}
	t.Run("no latency distribution", func(t *testing.T) {
		if _, err := parseWrk("Requests/sec:  1.00\n"); err == nil {
			t.Error("parseWrk accepted a report without --latency")
		}
	})
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		wantStatus  int
		wantClosing bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, false},
		{"connection close", "HTTP/1.1 302 Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 302, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A second response follows: the first must be read exactly.
			br := bufio.NewReader(strings.NewReader(tc.in + "HTTP/1.1 204 No Content\r\n\r\n"))
			status, closing, err := readResponse(br)
			if err != nil || status != tc.wantStatus || closing != tc.wantClosing {
				t.Fatalf("readResponse = %d, %v, %v; want %d, %v, nil", status, closing, err, tc.wantStatus, tc.wantClosing)
			}
			if status, _, err := readResponse(br); err != nil || status != 204 {
				t.Errorf("next response = %d, %v; want 204: the body was not consumed exactly", status, err)
			}
		})
	}
}
