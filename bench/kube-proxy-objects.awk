# Writes the objects of the kube-proxy sync benchmark into directory `dir`, as kube-proxy's
# --config-dir reads them: `n` ClusterIP Services (namespace ns<i % 100>, name svc<i>, cluster
# IP 10.96.0.10 + i, one TCP port 80 -> 8080), each with one EndpointSlice of 5 ready endpoints
# (10.244.0.0/16, nodeName node-<k % 50>).
#   services.json  a List of every Service
#   slices.json    a List of the EndpointSlices of svc1 .. svc<n-1>
#   slice-0.json   svc0's EndpointSlice, the file the one-endpoint change edits
# With bump=1 only slice-0.json is written, its first endpoint replaced by an unused address.
#
#   awk -v dir=DIR -v n=1000 [-v bump=1] -f bench/kube-proxy-objects.awk
function ip(base, k) {
  return sprintf("10.%d.%d.%d", base + int(k / 65536), int(k / 256) % 256, k % 256)
}
function slice(i, out,   e, k) {
  printf "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"svc%d-abcde\",\"namespace\":\"ns%d\",\"labels\":{\"kubernetes.io/service-name\":\"svc%d\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}],\"endpoints\":[", i, i % 100, i > out
  for (e = 0; e < eps; e++) {
    k = i * eps + e + 1
    if (i == 0 && e == 0 && bump) k = n * eps + 1
    printf "%s{\"addresses\":[\"%s\"],\"conditions\":{\"ready\":true},\"nodeName\":\"node-%d\"}", (e ? "," : ""), ip(244, k), k % 50 > out
  }
  printf "]}\n" > out
}
BEGIN {
  eps = 5
  if (dir == "" || n < 1) { print "usage: awk -v dir=DIR -v n=N [-v bump=1] -f kube-proxy-objects.awk" > "/dev/stderr"; exit 2 }
  s0 = dir "/slice-0.json"
  slice(0, s0)
  close(s0)
  if (bump) exit
  sv = dir "/services.json"
  sl = dir "/slices.json"
  print "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[" > sv
  print "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[" > sl
  for (i = 0; i < n; i++) {
    printf "%s{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"svc%d\",\"namespace\":\"ns%d\"},\"spec\":{\"clusterIP\":\"%s\",\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":8080,\"protocol\":\"TCP\"}]}}\n", (i ? "," : ""), i, i % 100, ip(96, i + 10) > sv
    if (i > 0) {
      if (i > 1) printf "," > sl
      slice(i, sl)
    }
  }
  print "]}" > sv
  print "]}" > sl
  close(sv)
  close(sl)
}
