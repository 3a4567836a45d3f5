package manifest

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"0", 0, ""},
		{"4096", 4096, ""},
		{"4096B", 4096, ""},
		{"1KiB", 1024, ""},
		{"512MiB", 512 << 20, ""},
		{"10GiB", 10 << 30, ""},
		{"10gib", 10 << 30, ""},
		{" 2 TiB ", 2 << 40, ""},
		{"10GB", 0, "write 10GiB"},
		{"10G", 0, "write 10GiB"},
		{"5k", 0, "write 5KiB"},
		{"1.5GiB", 0, "unknown unit"},
		{"-1GiB", 0, "does not start with a whole number"},
		{"GiB", 0, "does not start with a whole number"},
		{"", 0, "empty size"},
		{"10 parsecs", 0, `unknown unit "parsecs"`},
		{"9223372036854775807", 1<<63 - 1, ""},
		{"9223372036854775808", 0, "out of range"},
		{"8388608TiB", 0, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0"}, {1, "1B"}, {1000, "1000B"}, {1024, "1KiB"}, {1536 << 10, "1536KiB"},
		{512 << 20, "512MiB"}, {10 << 30, "10GiB"}, {3 << 40, "3TiB"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.in); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
		if tt.in > 0 {
			if back, err := ParseSize(FormatSize(tt.in)); err != nil || back != tt.in {
				t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tt.in, back, err)
			}
		}
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		show    string
		wantErr string
	}{
		{"5m", 5 * time.Minute, "5m", ""},
		{"90s", 90 * time.Second, "1m30s", ""},
		{"1h30m", 90 * time.Minute, "1h30m", ""},
		{"2h", 2 * time.Hour, "2h", ""},
		{"1500ms", 1500 * time.Millisecond, "1.5s", ""},
		{"0s", 0, "", "must be positive"},
		{"-5m", 0, "", "must be positive"},
		{"5", 0, "", "not valid"},
		{"5 minutes", 0, "", "not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if s := FormatDuration(got); s != tt.show {
				t.Errorf("FormatDuration(%v) = %q, want %q", got, s, tt.show)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"enabled", "verity", "signed", "format_version"}
	tests := []struct{ in, want string }{
		{"enabld", "enabled"}, {"Verity", "verity"}, {"sigend", "signed"}, {"formatversion", "format_version"}, {"xyzzy", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, names); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
