package hostsfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRenderKeepsOtherLines(t *testing.T) {
	base := "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
	withBlock := Render(base, map[string]string{"b.d.test": "10.0.0.1", "a.d.test": "10.0.0.1"})
	want := base + begin + "\n10.0.0.1\ta.d.test\n10.0.0.1\tb.d.test\n" + end + "\n"
	if withBlock != want {
		t.Fatalf("Render =\n%s\nwant\n%s", withBlock, want)
	}
	if again := Render(withBlock+"192.0.2.1\tother\n", map[string]string{"a.d.test": "10.0.0.2"}); again != base+"192.0.2.1\tother\n"+begin+"\n10.0.0.2\ta.d.test\n"+end+"\n" {
		t.Errorf("re-render =\n%s", again)
	}
	if cleared := Render(withBlock, nil); cleared != base {
		t.Errorf("Render with no names =\n%s\nwant\n%s", cleared, base)
	}
}

func TestSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(path, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	names := map[string]string{"a.d.test": "10.0.0.1"}
	if changed, err := Sync(path, names); err != nil || !changed {
		t.Fatalf("first Sync = %t, %v", changed, err)
	}
	if changed, err := Sync(path, names); err != nil || changed {
		t.Errorf("second Sync = %t, %v; want no change", changed, err)
	}
	if _, err := Sync(filepath.Join(t.TempDir(), "missing"), names); err == nil {
		t.Error("Sync of a missing file succeeded")
	}
}
