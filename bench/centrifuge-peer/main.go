// A minimal server on the Centrifuge library, the peer tributary's live
// delivery is measured against (BENCHMARKS.md, "Live delivery beside
// Centrifuge"): the memory broker, anonymous websocket clients that may
// subscribe to any channel, and `POST /publish?channel=<name>` publishing
// the request body (one JSON value) to that channel.
//
// Built from Debian's golang-github-centrifugal-centrifuge-dev, offline:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o /tmp/centrifuge-peer ./bench/centrifuge-peer
//	/tmp/centrifuge-peer -addr 127.0.0.1:18800
package main

import (
	"context"
	"flag"
	"io/ioutil"
	"log"
	"net/http"

	"github.com/centrifugal/centrifuge"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18800", "where to listen")
	flag.Parse()

	cfg := centrifuge.DefaultConfig
	cfg.LogLevel = centrifuge.LogLevelError
	cfg.LogHandler = func(e centrifuge.LogEntry) { log.Printf("%s: %v", e.Message, e.Fields) }
	node, err := centrifuge.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: ""}}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		log.Fatal(err)
	}

	http.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{}))
	http.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		body, err := ioutil.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		channel := r.URL.Query().Get("channel")
		if _, err := node.Publish(channel, body); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"published":1}`))
	})
	log.Printf("listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
