// Command backend is a Go service behind certgate: stdlib net/http, plain HTTP on loopback,
// trusting the identity headers the gateway sets instead of doing TLS itself. It answers JSON
// with what it read, so the e2e suite can check it through a client request.
//
//	backend -listen 127.0.0.1:PORT
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
)

type identity struct {
	Verify  string `json:"verify"`
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
	Serial  string `json:"serial"`
	Path    string `json:"path"`
	Proto   string `json:"proto"`
	Backend string `json:"backend"`
}

func whoami(w http.ResponseWriter, r *http.Request) {
	// Only the gateway reaches this port; it removes these headers from the client's request
	// and sets them from the verified certificate.
	if r.Header.Get("X-SSL-Client-Verify") != "SUCCESS" {
		http.Error(w, "no verified client certificate", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(identity{
		Verify:  r.Header.Get("X-SSL-Client-Verify"),
		Subject: r.Header.Get("X-SSL-Client-S-DN"),
		Issuer:  r.Header.Get("X-SSL-Client-I-DN"),
		Serial:  r.Header.Get("X-SSL-Client-Serial"),
		Path:    r.URL.Path,
		Proto:   r.Proto,
		Backend: "go-net-http",
	})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on")
	flag.Parse()
	http.HandleFunc("/", whoami)
	log.Printf("listening on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
