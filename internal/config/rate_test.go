package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestParseErrorRate_PercentOrFraction(t *testing.T) {
	tests := []struct {
		in   string
		want ErrorRate
	}{
		{"2%", 0.02},
		{"0.5%", 0.005},
		{"7.5%", 0.075},
		{"100%", 1},
		{"0%", 0},
		{"0.02", 0.02},
		{".5", 0.5},
		{"0", 0},
		{"-2%", -0.02}, // Validate's to refuse
	}
	for _, tt := range tests {
		got, err := parseErrorRate(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseErrorRate(%q) = %v, %v; want %v", tt.in, float64(got), err, float64(tt.want))
		}
	}
	// A measured 4 of 200 is exactly at a limit of 2%, not above it.
	if got, _ := parseErrorRate("2%"); float64(got) != 4.0/200 {
		t.Errorf("2%% = %v, want exactly 4/200", float64(got))
	}
}

func TestErrorRate_StringIsAPercentage(t *testing.T) {
	for _, tt := range []struct {
		in   ErrorRate
		want string
	}{{0, "0%"}, {0.02, "2%"}, {0.075, "7.5%"}, {0.0001, "0.01%"}, {1, "100%"}, {1.5, "150%"}, {-0.02, "-2%"}, {0.07, "7%"}} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ErrorRate(%v).String() = %q, want %q", float64(tt.in), got, tt.want)
		}
	}
}

func FuzzErrorRate_ReadsBackWhatItWrites(f *testing.F) {
	for _, s := range []string{"2%", "0.02", "100%", "7.5%", ".5", "-0.5%", "0.1%", "123456789.123456789%", "1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseErrorRate(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		back, err := parseErrorRate(r.String())
		if err != nil || back != r {
			t.Fatalf("%q read as %v, written as %q, read back as %v (%v)", s, float64(r), r.String(), float64(back), err)
		}
	})
}

func TestParseErrorRate_RefusesWhatItWouldHaveToGuess(t *testing.T) {
	tests := []struct{ in, want string }{
		{"1", `ambiguous rate "1": a bare number is a fraction (0.02 is 2%); write 1% for a percentage, 100% for all`},
		{"2", `ambiguous rate "2"`},
		{"1.0", `ambiguous rate "1.0"`},
		{"two", `invalid rate "two"`},
		{"", `invalid rate ""`},
		{"NaN", `invalid rate "NaN"`},
		{"1e-2", `invalid rate "1e-2"`},
		{"%", `invalid percentage "%"`},
		{"2 %", `invalid percentage "2 %"`},
		{"2%%", `invalid percentage "2%%"`},
	}
	for _, tt := range tests {
		_, err := parseErrorRate(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseErrorRate(%q) error = %v, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestLoadConfig_BadTrafficRulesNameTheField(t *testing.T) {
	baked := minimal + "    bake: 1m\n"
	tests := []struct {
		name string
		yml  string
		want string
	}{
		{"bake rate above 100%", baked + "    bake_max_error_rate: 150%\n",
			"config.yml:7: services.web.bake_max_error_rate: must be above 0% and at most 100% (or 0 for off), got 150%"},
		{"bake rate negative", baked + "    bake_max_error_rate: -2%\n",
			"config.yml:7: services.web.bake_max_error_rate: must be above 0% and at most 100% (or 0 for off), got -2%"},
		{"bake rate a bare 2", baked + "    bake_max_error_rate: 2\n",
			`config.yml:7: services.web.bake_max_error_rate: ambiguous rate "2": a bare number is a fraction (0.02 is 2%); write 2% for a percentage`},
		{"bake rate not a number", baked + "    bake_max_error_rate: some\n",
			`config.yml:7: services.web.bake_max_error_rate: invalid rate "some"`},
		{"bake rate a mapping", baked + "    bake_max_error_rate: {max: 2%}\n",
			"config.yml:7: services.web.bake_max_error_rate: must be a percentage such as 2% or a fraction such as 0.02, got a mapping"},
		{"bake rate without bake", minimal + "    bake_max_error_rate: 2%\n",
			"config.yml:6: services.web.bake_max_error_rate: needs bake: the rule judges the new color during the bake, and bake is 0s"},
		{"bake min requests zero", baked + "    bake_min_requests: 0\n",
			"config.yml:7: services.web.bake_min_requests: must be at least 1, got 0"},
		{"watch rate above 100%", "watch:\n  max_error_rate: 101%\n" + minimal,
			"config.yml:2: watch.max_error_rate: must be above 0% and at most 100% (or 0 for off), got 101%"},
		{"watch min requests negative", "watch:\n  min_requests: -1\n" + minimal,
			"config.yml:2: watch.min_requests: must be at least 1, got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.yml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadConfig_TrafficRulesReachTheController(t *testing.T) {
	c, err := parse(t, "watch:\n  max_error_rate: 0.05\n  min_requests: 50\n"+minimal+
		"    bake: 1m\n    bake_max_error_rate: 2%\n    bake_min_requests: 30\n"+
		"  api:\n    image: demoapp\n    port: 8001\n")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.WatchSpec().Traffic, (controller.TrafficRule{MaxErrorRate: 0.05, MinRequests: 50}); got != want {
		t.Errorf("WatchSpec().Traffic = %+v, want %+v", got, want)
	}
	specs := c.ServiceSpecs()
	if got, want := specs[1].BakeTraffic, (controller.TrafficRule{MaxErrorRate: 0.02, MinRequests: 30}); specs[1].Name != "web" || got != want {
		t.Errorf("%s BakeTraffic = %+v, want web's %+v", specs[1].Name, got, want)
	}
	if got, want := specs[0].BakeTraffic, (controller.TrafficRule{MinRequests: 20}); got != want {
		t.Errorf("api BakeTraffic = %+v, want off with the default minimum %+v", got, want)
	}
	if got, want := c.TrafficRules(), []string{"watch.max_error_rate", "services.web.bake_max_error_rate"}; !slices.Equal(got, want) {
		t.Errorf("TrafficRules() = %q, want %q", got, want)
	}
	if got := Default().TrafficRules(); len(got) != 0 {
		t.Errorf("TrafficRules() of the defaults = %q, want none", got)
	}
}

func TestWriteFile_TrafficRulesReadBackExactly(t *testing.T) {
	dir := t.TempDir()
	want := Default()
	want.DataDir, want.Nginx.UpstreamDir = filepath.Join(dir, "data"), filepath.Join(dir, "upstreams")
	want.Watch.MaxErrorRate = 1 // "100%": a bare 1 would be refused
	svc := DefaultService()
	svc.Image, svc.Port, svc.Bake = "demoapp", 8000, time.Minute
	svc.BakeMaxErrorRate, _ = parseErrorRate("7%")
	want.Services = map[string]Service{"web": svc}
	path := filepath.Join(dir, "deployd.yml")
	if err := want.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, noEnv)
	if err != nil {
		t.Fatalf("Load(written file): %v", err)
	}
	got.origins = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back =\n%+v\nwant\n%+v", got, want)
	}
}
