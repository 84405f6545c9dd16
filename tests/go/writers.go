// Four goroutines, on as many threads, each append to a file of its own
// and sync it: a multithreaded Go program for the seccomp backend.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

func main() {
	runtime.GOMAXPROCS(4)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			runtime.LockOSThread()
			f, err := os.Create(filepath.Join(os.Args[1], fmt.Sprintf("w%d", w)))
			if err != nil {
				panic(err)
			}
			for i := 0; i < 20; i++ {
				if _, err := f.Write([]byte("line\n")); err != nil {
					panic(err)
				}
			}
			if err := f.Sync(); err != nil {
				panic(err)
			}
			f.Close()
		}(w)
	}
	wg.Wait()
	fmt.Println("ok")
}
