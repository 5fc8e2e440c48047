module nestplane.io/hack/smoke-web

go 1.25
