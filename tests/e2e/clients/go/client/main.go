// Command client is the seeds' Go mTLS client (client/client.go): crypto/tls with the CA as
// RootCAs, the client certificate, and TLS 1.3 at least. It makes one GET and prints one JSON
// line for the e2e suite.
//
//	client -url URL -ca ca.crt [-cert client.crt -key client.key]
//
// Without -cert the config only verifies the server ("仅传递CA时，注释这行").
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

type report struct {
	Status    int               `json:"status"`
	Proto     string            `json:"proto"`
	TLS       string            `json:"tls"`
	Headers   map[string]string `json:"headers"`
	Body      string            `json:"body"`
	Error     string            `json:"error"`
	ErrorType string            `json:"error_type"`
}

func main() {
	url := flag.String("url", "", "URL to GET")
	caFile := flag.String("ca", "", "CA certificate (PEM) that signed the server certificate")
	certFile := flag.String("cert", "", "client certificate (PEM)")
	keyFile := flag.String("key", "", "client private key (PEM)")
	flag.Parse()

	out := report{Headers: map[string]string{}}
	if err := run(*url, *caFile, *certFile, *keyFile, &out); err != nil {
		out.Error = err.Error()
		out.ErrorType = fmt.Sprintf("%T", err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(2)
	}
}

func run(url, caFile, certFile, keyFile string, out *report) error {
	caCert, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	caCertPool := x509.NewCertPool()
	if !caCertPool.AppendCertsFromPEM(caCert) {
		return fmt.Errorf("no certificate in %s", caFile)
	}

	tlsConfig := &tls.Config{
		RootCAs:    caCertPool,
		MinVersion: tls.VersionTLS13,
	}
	if certFile != "" {
		clientCert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return err
		}
		tlsConfig.Certificates = []tls.Certificate{clientCert}
	}

	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: tlsConfig},
		Timeout:   20 * time.Second,
	}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	out.Status = resp.StatusCode
	out.Proto = resp.Proto
	if resp.TLS != nil {
		out.TLS = versionName(resp.TLS.Version)
	}
	for k := range resp.Header {
		out.Headers[k] = resp.Header.Get(k)
	}
	out.Body = string(body)
	return nil
}

// versionName is tls.VersionName, which Debian 12's Go 1.19 does not have yet.
func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	default:
		return fmt.Sprintf("0x%04x", v)
	}
}
