module github.com/rafting/rafting/benchmarks

go 1.26

replace github.com/rafting/rafting => ../
