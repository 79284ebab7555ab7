module github.com/redismigrate/migrate

go 1.26.0

require (
	github.com/redis/rueidis v1.0.79
	golang.org/x/sync v0.25.0
	golang.org/x/time v0.16.0
)

require golang.org/x/sys v0.47.0 // indirect
