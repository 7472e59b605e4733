// Command backend is a Go service behind certgate: stdlib net/http, plain HTTP on loopback,
// trusting the identity headers the gateway sets instead of doing TLS itself. It answers JSON
// with what it read, so the e2e suite can check it through a client request.
//
//	backend -listen 127.0.0.1:PORT
//	backend -listen 127.0.0.1:PORT -path-probe
//
// With -path-probe it is instead an application with protected handlers, for the path
// normalization tests: an http.ServeMux (which cleans paths, redirecting `//x` and `/a/../x`,
// and matches on the decoded r.URL.Path) with an admin handler at /admin/x, a private one at
// /private/x and a catch-all at /; each answers its marker and records the call, and GET
// /__calls answers every call recorded so far.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"sync"
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

// call is what one handler of the -path-probe application saw.
type call struct {
	Handler    string `json:"handler"`
	Path       string `json:"path"`        // r.URL.Path: decoded, what the mux matched
	RequestURI string `json:"request_uri"` // the request target exactly as received
	Query      string `json:"query"`       // r.URL.RawQuery
	Subject    string `json:"subject"`     // X-SSL-Client-S-DN, set by the gateway
	Proto      string `json:"proto"`
}

func probeMux() *http.ServeMux {
	var mu sync.Mutex
	calls := []call{}
	handler := func(marker string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c := call{
				Handler:    marker,
				Path:       r.URL.Path,
				RequestURI: r.RequestURI,
				Query:      r.URL.RawQuery,
				Subject:    r.Header.Get("X-SSL-Client-S-DN"),
				Proto:      r.Proto,
			}
			mu.Lock()
			calls = append(calls, c)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(c)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/x", handler("ADMIN-HANDLER"))
	mux.HandleFunc("/private/x", handler("PRIVATE-HANDLER"))
	mux.HandleFunc("/", handler("CATCH-ALL"))
	mux.HandleFunc("/__calls", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(calls)
	})
	return mux
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on")
	probe := flag.Bool("path-probe", false, "serve the path-normalization probe application instead")
	flag.Parse()
	if *probe {
		log.Printf("path probe listening on %s", *listen)
		log.Fatal(http.ListenAndServe(*listen, probeMux()))
	}
	http.HandleFunc("/", whoami)
	log.Printf("listening on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
