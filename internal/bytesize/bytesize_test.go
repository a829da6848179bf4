package bytesize

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		wantErr bool
	}{
		{"0", 0, false},
		{"4096", 4096, false},
		{"512MiB", 512 << 20, false},
		{"1GiB", 1 << 30, false},
		{"500MB", 500_000_000, false},
		{"2GB", 2_000_000_000, false},
		{"256KiB", 256 << 10, false},
		{"1.5KiB", 1536, false},
		{" 10 kb ", 10_000, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"12XB", 0, true},
		{"-1", -1, false},
		{"-", 0, true},
		{"99999999999999999999", 0, true},
		{"9000000TiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	var v struct {
		A Size `yaml:"a"`
		B Size `yaml:"b"`
	}
	if err := yaml.Unmarshal([]byte("a: 1GiB\nb: 1234\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != GiB || v.B != 1234 {
		t.Fatalf("got %d %d, want %d 1234", v.A, v.B, GiB)
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "a: 1GiB\nb: \"1234\"\n"; got != want {
		t.Fatalf("marshal = %q, want %q", got, want)
	}
	if err := yaml.Unmarshal([]byte("a: lots\n"), &v); err == nil {
		t.Fatal("want error for a: lots")
	}
}
