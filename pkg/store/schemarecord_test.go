package store

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/deployd/deployd/pkg/controller"
)

func TestDeployment_SchemaRoundTrips(t *testing.T) {
	deploy := fullDeployment()
	deploy.Schema = &controller.SchemaRecord{Version: "3f2a9c01d4e5",
		Applied: []string{"app.0001_initial", "notes.0002_add_title"}, Migrated: []string{"notes.0002_add_title"}}
	unchanged := fullDeployment()
	unchanged.ID = "01JPD0000000000000000000C3"
	unchanged.Schema = &controller.SchemaRecord{Version: "e3b0c44298fc"}
	rollback := controller.Deployment{ID: "rb", Service: "shop", Kind: controller.KindRollback, CreatedAt: t0,
		SchemaChange: &controller.SchemaChange{Breaking: true, Confirmed: true,
			Migrations: []string{"notes.0003_drop_legacy"}, Message: "shop's active shop:v3 applied notes.0003_drop_legacy; ..."}}
	for _, d := range []controller.Deployment{deploy, unchanged, rollback} {
		s := newStore(t)
		if err := s.PutDeployment(t.Context(), d); err != nil {
			t.Fatalf("PutDeployment: %v", err)
		}
		got, err := s.GetDeployment(t.Context(), d.ID)
		if err != nil {
			t.Fatalf("GetDeployment: %v", err)
		}
		if !reflect.DeepEqual(got, d) {
			t.Errorf("GetDeployment =\n%+v\nwant\n%+v", got, d)
		}
	}
}

// Records written before deploys read the schema have neither field.
func TestDeployment_RecordWithoutSchemaDecodes(t *testing.T) {
	old := `{"id":"d1","service":"shop","kind":"deploy","image":"shop:v1","from_color":"","to_color":"blue",` +
		`"status":"succeeded","error":"","steps":[],"trigger":{"source":"api","actor":"ops","commit":""},` +
		`"created_at":"2025-06-01T12:00:00Z","finished_at":null}`
	d, err := decodeDeployment("d1", []byte(old))
	if err != nil {
		t.Fatalf("decodeDeployment: %v", err)
	}
	if d.Schema != nil || d.SchemaChange != nil || d.Status != controller.StatusSucceeded || d.Image != "shop:v1" {
		t.Errorf("decoded = %+v, want shop:v1 succeeded without schema", d)
	}
	again, err := json.Marshal(newDeploymentV1(d))
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != old {
		t.Errorf("re-encoded =\n%s\nwant the old bytes\n%s", again, old)
	}
}
