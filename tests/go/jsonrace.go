// Two goroutines increment a counter kept in a JSON file, {"n":N}, each
// reading it under an flock, releasing the lock, then writing N+1 under
// the lock again: an update made between the two is lost. Exit status 1
// when one was. The second starts its rounds GAP_US microseconds after
// the first: natively they rarely overlap.
//
//	jsonrace FILE ROUNDS GAP_US
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type counter struct {
	N int `json:"n"`
}

func locked(path string, flags int, f func(*os.File)) {
	file, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		panic(err)
	}
	defer file.Close()
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX); err != nil {
		panic(err)
	}
	f(file)
	syscall.Flock(int(file.Fd()), syscall.LOCK_UN)
}

func read(path string) (c counter) {
	locked(path, os.O_RDONLY, func(f *os.File) {
		buf := make([]byte, 64)
		n, _ := f.Read(buf)
		if err := json.Unmarshal(buf[:n], &c); err != nil {
			panic(err)
		}
	})
	return
}

func write(path string, c counter) {
	locked(path, os.O_WRONLY|os.O_CREATE, func(f *os.File) {
		data, _ := json.Marshal(c)
		f.Truncate(0)
		if _, err := f.Write(data); err != nil {
			panic(err)
		}
		f.Sync()
	})
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: jsonrace FILE ROUNDS GAP_US")
		os.Exit(2)
	}
	path := os.Args[1]
	rounds, _ := strconv.Atoi(os.Args[2])
	gap, _ := strconv.Atoi(os.Args[3])
	write(path, counter{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			time.Sleep(time.Duration(w*gap) * time.Microsecond)
			for i := 0; i < rounds; i++ {
				c := read(path)
				c.N++
				write(path, c)
			}
		}(w)
	}
	wg.Wait()
	if n := read(path).N; n != 2*rounds {
		fmt.Printf("lost updates: %d of %d\n", 2*rounds-n, 2*rounds)
		os.Exit(1)
	}
}
