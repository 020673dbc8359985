package store

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestTraffic_RoundTripSurvivesAReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployd.db")
	want := controller.TrafficState{
		Service: "shop", Paused: true, PausedSince: t0, MaxHold: 1500 * time.Millisecond, MaxHeld: 250,
		Maintenance: true, MaintenanceSince: t0.Add(time.Minute), Message: "Back at 18:00 UTC — sorry!",
		UpdatedAt: t0.Add(2 * time.Minute),
	}
	s, err := Open(t.Context(), Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutTraffic(t.Context(), want); err != nil {
		t.Fatalf("PutTraffic: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path)
	got, err := s.GetTraffic(t.Context(), "shop")
	if err != nil {
		t.Fatalf("GetTraffic: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back =\n%+v\nwant\n%+v", got, want)
	}

	off := controller.TrafficState{Service: "shop", UpdatedAt: t0.Add(time.Hour)}
	if err := s.PutTraffic(t.Context(), off); err != nil {
		t.Fatalf("PutTraffic: %v", err)
	}
	if got, err := s.GetTraffic(t.Context(), "shop"); err != nil || !reflect.DeepEqual(got, off) {
		t.Errorf("after replacing = %+v, %v; want %+v", got, err, off)
	}
}

func TestTraffic_NeverRecordedIsNotFound(t *testing.T) {
	s := newStore(t)
	if _, err := s.GetTraffic(t.Context(), "shop"); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("GetTraffic = %v, want ErrNotFound", err)
	}
	if err := s.PutTraffic(t.Context(), controller.TrafficState{}); err == nil {
		t.Fatal("PutTraffic without a service succeeded")
	}
}

// A file written before the traffic bucket existed gets it at open, and
// reads as "never paused".
func TestTraffic_Schema1FileHasNoneRecorded(t *testing.T) {
	s := openTest(t, copySchema1(t))
	if _, err := s.GetTraffic(t.Context(), "web"); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("GetTraffic = %v, want ErrNotFound", err)
	}
	if err := s.PutTraffic(t.Context(), controller.TrafficState{Service: "web", Paused: true}); err != nil {
		t.Fatalf("PutTraffic: %v", err)
	}
}
