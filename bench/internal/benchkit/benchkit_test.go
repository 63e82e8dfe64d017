package benchkit

import (
	"net"
	"os"
	"testing"
	"time"
)

func TestMedianWorstRatio(t *testing.T) {
	d := []time.Duration{5 * time.Second, time.Second, 3 * time.Second, 2 * time.Second}
	if got := Median(d); got != 3*time.Second {
		t.Errorf("Median(%v) = %s, want 3s (the upper middle of an even count)", d, got)
	}
	if d[0] != 5*time.Second {
		t.Errorf("Median reordered its input: %v", d)
	}
	if got := Median([]int64{7, 1, 4}); got != 4 {
		t.Errorf("Median of three = %d, want 4", got)
	}
	if got := Worst(d); got != 5*time.Second {
		t.Errorf("Worst = %s, want 5s", got)
	}
	if got := Ratio(3*time.Second, 2*time.Second); got != 1.5 {
		t.Errorf("Ratio = %v, want 1.5", got)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var d []time.Duration
		for _, v := range n {
			d = append(d, time.Duration(v)*time.Millisecond)
		}
		return d
	}
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"none", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"p50 of ten is the fifth", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 50, 5 * time.Millisecond},
		{"p99 of ten is the largest", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 99, 10 * time.Millisecond},
		{"p100", ms(3, 1, 2), 100, 3 * time.Millisecond},
		{"tiny p is the smallest", ms(3, 1, 2), 0.1, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.samples, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %s, want %s", tc.samples, tc.p, got, tc.want)
			}
		})
	}
}

func TestParseCPUTime(t *testing.T) {
	// utime 250 and stime 50 ticks; the command name holds spaces and a
	// parenthesis.
	line := "4242 (kube (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 1000 1000000 2000 18446744073709551615"
	got, err := parseCPUTime(line)
	if err != nil || got != 3*time.Second {
		t.Errorf("parseCPUTime = %s, %v; want 3s", got, err)
	}
	if _, err := parseCPUTime("4242 (truncated) S 1"); err == nil {
		t.Error("a truncated line was accepted")
	}
}

func TestCPUTimeOfSelf(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the process has used 100ms more; on a shared machine
	// that may take longer than 100ms of wall time, never 30s.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		after, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after-before >= 100*time.Millisecond {
			return
		}
	}
	t.Error("30s of spinning never counted 100ms of CPU time")
}

func TestEstablishedConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
	}
	if n, err := EstablishedConnections(port); err != nil || n != 3 {
		t.Errorf("EstablishedConnections(%d) = %d, %v; want the 3 accepted (not the clients' ends, nor the listener)", port, n, err)
	}
}

func TestCountEstablished(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0929 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0929 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 0100007F:D431 0100007F:0929 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
   3: 0100007F:0929 0100007F:D432 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0 0 0 0 0 0`
	if n := countEstablished(table, 2345); n != 1 {
		t.Errorf("countEstablished = %d, want 1: the established server end only, not the listener, the client end or a TIME_WAIT", n)
	}
}

func TestReplaceSection(t *testing.T) {
	report := "# R\n\nintro\n\n## A\n\na\n\n## B\n\nold b\n\n## C\n\nc\n"
	for _, tc := range []struct {
		name, heading, section, want string
		err                          bool
	}{
		{"middle", "B", "## B\n\nnew b\n\n", "# R\n\nintro\n\n## A\n\na\n\n## B\n\nnew b\n\n## C\n\nc\n", false},
		{"last", "C", "\n## C\n\nnew c\n", "# R\n\nintro\n\n## A\n\na\n\n## B\n\nold b\n\n## C\n\nnew c\n", false},
		{"missing", "D", "## D\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replaceSection(report, tc.heading, tc.section)
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
