module nestplane.io/hack/smoke

go 1.25
