module github.com/rafting/rafting

go 1.26
