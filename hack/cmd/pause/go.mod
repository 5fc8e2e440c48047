module nestplane.io/hack/pause

go 1.25
