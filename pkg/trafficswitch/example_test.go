package trafficswitch_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/deployd/deployd/pkg/trafficswitch"
)

// A deploy as the controller runs it with the switch: the service listens
// on a fixed address (nginx's upstream points there, written once); the
// new color's replicas become the target set in one step; the old color
// is drained, then its replicas can stop.
func Example() {
	replica := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, name)
		}))
	}
	blue, green := replica("blue"), replica("green")
	defer blue.Close()
	defer green.Close()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	ctx := context.Background()
	sw, err := trafficswitch.New(trafficswitch.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = sw.Close(ctx) }()
	if err := sw.Listen(ctx, "web", "127.0.0.1:0"); err != nil {
		fmt.Println(err)
		return
	}
	url := "http://" + sw.Addr("web").String() + "/"
	get := func() string {
		res, err := http.Get(url)
		if err != nil {
			return err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}

	_ = sw.SetTargets("web", "blue", []string{addr(blue)})
	fmt.Println("before:", get())

	_ = sw.SetTargets("web", "green", []string{addr(green)})
	res, err := sw.Drain(ctx, "web", "blue", 30*time.Second)
	fmt.Println("after:", get())
	fmt.Printf("drained blue: waited for %d requests, timed out: %v, err: %v\n", res.Waited, res.TimedOut, err)
	// Output:
	// before: blue
	// after: green
	// drained blue: waited for 0 requests, timed out: false, err: <nil>
}
