package queue

import (
	"reflect"
	"testing"
	"time"
)

// FuzzEnvelope: the envelope parser never panics on damaged files, and
// what it accepts encodes back to an equal envelope.
func FuzzEnvelope(f *testing.F) {
	env := Envelope{
		ID: "0000000000001-00112233aabbccdd", Sender: "alice@example.org", ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		AuthUser: "alice@example.org", Junk: true, Ret: "HDRS", EnvID: "e1",
		Recipients: []Recipient{
			{Address: "bob@example.org", Orig: "b@example.org", Route: RouteLocal, Notify: "FAILURE,DELAY"},
			{Address: "c@remote.example", Route: RouteRemote, Status: Deferred, Attempts: 2, Retry: time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC),
				Last: Result{Code: 451, Enhanced: "4.7.1", Text: "later", RemoteMTA: "mx.remote.example"}},
			{Address: "d@remote.example", Route: RouteRemote, Status: Failed, Reported: true, Last: Result{Code: 550, Text: "no"}},
		},
	}
	seed, err := marshalEnvelope(env)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"version":1,"id":"a","sender":"","recipients":[{"address":"x","route":0,"status":"pending"}],"received_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"id":"../x"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := parseEnvelope(data)
		if err != nil {
			return
		}
		again, err := marshalEnvelope(env)
		if err != nil {
			t.Fatalf("marshalEnvelope(parsed %+v) = %v", env, err)
		}
		env2, err := parseEnvelope(again)
		if err != nil {
			t.Fatalf("parseEnvelope(%q) = %v after encoding an accepted envelope", again, err)
		}
		if !reflect.DeepEqual(env, env2) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", env, env2)
		}
	})
}
