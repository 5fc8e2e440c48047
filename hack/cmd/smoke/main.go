// Command smoke is the workload of the management-cluster smoke test, in one static binary:
//
//	smoke serve          answer HTTP on :8080 with the pod's hostname
//	smoke fetch URL      resolve and GET URL, print the body (exit 1 on failure)
//	smoke keep PATH      write a random token to PATH unless it exists, print it, then wait for SIGTERM
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cmd := "serve"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	switch {
	case cmd == "serve":
		serve()
	case cmd == "fetch" && len(os.Args) == 3:
		fetch(os.Args[2])
	case cmd == "keep" && len(os.Args) == 3:
		keep(os.Args[2])
	default:
		log.Fatalf("usage: smoke serve | fetch URL | keep PATH")
	}
}

func serve() {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "smoke %s\n", host)
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second}
	go func() { log.Fatal(srv.ListenAndServe()) }()
	waitForTermination()
}

func fetch(raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		log.Fatalf("bad URL %q: %v", raw, err)
	}
	addrs, err := net.LookupHost(u.Hostname())
	if err != nil {
		log.Fatalf("resolve %s: %v", u.Hostname(), err)
	}
	fmt.Printf("resolved %s to %v\n", u.Hostname(), addrs)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(raw)
	if err != nil {
		log.Fatalf("GET %s: %v", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("status %d body %s", resp.StatusCode, body)
	if resp.StatusCode != http.StatusOK {
		os.Exit(1)
	}
}

func keep(path string) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		buf := make([]byte, 16)
		if _, err := rand.Read(buf); err != nil {
			log.Fatal(err)
		}
		data = []byte(hex.EncodeToString(buf))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			log.Fatalf("write %s: %v", path, err)
		}
		fmt.Println("created token")
	} else if err != nil {
		log.Fatalf("read %s: %v", path, err)
	}
	fmt.Printf("token=%s\n", data)
	waitForTermination()
}

func waitForTermination() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
