package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// listenHold is how long --listen serves before it exits.
const listenHold = 15 * time.Second

// listenMain (--listen PORT...) is the agent of the inbound test: it
// serves "leaked-PORT" on every port given, on all addresses, prints
// "listening" once all are bound, and exits after listenHold.
func listenMain(ports []string) int {
	for _, p := range ports {
		ln, err := net.Listen("tcp", "[::]:"+p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "listen:", err)
			return 1
		}
		go func(ln net.Listener, p string) {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "leaked-%s\n", p)
				c.Close()
			}
		}(ln, p)
	}
	fmt.Println("listening on " + strings.Join(ports, ","))
	time.Sleep(listenHold)
	return 0
}
