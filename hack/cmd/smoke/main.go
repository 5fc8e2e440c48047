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

// fetch retries for up to 30 seconds: a new Service's DNS record and proxy rules take
// a moment to appear, as they do for any client.
func fetch(raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		log.Fatalf("bad URL %q: %v", raw, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fetchOnce(u.Hostname(), raw)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log.Fatal(err)
		}
		log.Printf("retrying: %v", err)
		time.Sleep(time.Second)
	}
}

func fetchOnce(host, raw string) error {
	addrs, err := net.LookupHost(host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	fmt.Printf("resolved %s to %v\n", host, addrs)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(raw)
	if err != nil {
		return fmt.Errorf("GET %s: %w", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", raw, resp.StatusCode)
	}
	fmt.Printf("status %d body %s", resp.StatusCode, body)
	return nil
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
