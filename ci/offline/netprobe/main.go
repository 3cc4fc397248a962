// Command netprobe is the tiny network test tool preloaded in the offline
// node image, so connectivity checks need no image pulls:
//
//	netprobe serve ADDR            accept TCP connections, answer "ok\n"
//	netprobe connect ADDR TIMEOUT  exit 0 if ADDR answers "ok" within TIMEOUT, else 1
//	netprobe dns NAME              exit 0 if NAME resolves, printing the addresses
//	netprobe idle                  block until SIGTERM/SIGINT (a pod to exec into)
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		need(3)
		err = serve(os.Args[2])
	case "connect":
		need(4)
		err = connect(os.Args[2], os.Args[3])
	case "dns":
		need(3)
		err = lookup(os.Args[2])
	case "idle":
		idle()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netprobe:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: netprobe serve ADDR | connect ADDR TIMEOUT | dns NAME | idle")
	os.Exit(2)
}

func need(n int) {
	if len(os.Args) < n {
		usage()
	}
}

func serve(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening on", l.Addr())
	go func() { idle(); os.Exit(0) }()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte("ok\n"))
		}()
	}
}

func connect(addr, timeout string) error {
	d, err := time.ParseDuration(timeout)
	if err != nil {
		return fmt.Errorf("bad timeout %q: %w", timeout, err)
	}
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("connected to %s but read failed: %w", addr, err)
	}
	if strings.TrimSpace(line) != "ok" {
		return fmt.Errorf("unexpected answer from %s: %q", addr, line)
	}
	fmt.Println("reached", addr)
	return nil
}

func lookup(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	fmt.Println(name, strings.Join(addrs, " "))
	return nil
}

func idle() {
	s := make(chan os.Signal, 1)
	signal.Notify(s, syscall.SIGTERM, syscall.SIGINT)
	<-s
}
