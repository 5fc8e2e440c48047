// A stand-in for TencentCloud's VPC SDK, which the Go module proxy refuses. flanneld links every
// backend; only its TencentCloud VPC backend uses this package, and the pod network never
// selects that backend (it uses VXLAN). See build_flannel in hack/build-binaries.sh.
module github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc

go 1.25
