"""Project macros: keep BUILD files short and every target built the same way."""

def netpol_cc_library(name, deps = [], **kwargs):
    native.cc_library(name = name, deps = deps, **kwargs)

def netpol_cc_binary(name, deps = [], **kwargs):
    native.cc_binary(name = name, deps = deps, **kwargs)

def netpol_cc_test(name, deps = [], tags = [], root = False, **kwargs):
    """A gtest test. root=True marks tests that touch the kernel (network namespaces, nftables):
    they run as root, one at a time, outside the sandbox."""
    if root:
        tags = tags + ["exclusive", "no-sandbox", "root"]
    native.cc_test(
        name = name,
        deps = deps + ["@system//:gtest_main"],
        tags = tags,
        **kwargs
    )

def netpol_proto_library(name, srcs, grpc = True, deps = [], visibility = None):
    """C++ code for .proto files via Debian's protoc and grpc_cpp_plugin.

    Generates <base>.pb.{h,cc} (and <base>.grpc.pb.{h,cc} when grpc) next to the package and wraps
    them in a cc_library called `name`.
    """
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    pkg = native.package_name()
    plugin = ""
    tools = []
    if grpc:
        plugin = "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin --grpc_out=$(GENDIR) "
    native.genrule(
        name = name + "_codegen",
        srcs = srcs,
        outs = outs,
        cmd = "/usr/bin/protoc -I. -I/usr/include --cpp_out=$(GENDIR) " + plugin +
              " ".join(["$(location %s)" % s for s in srcs]),
        tools = tools,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:grpc", "@system//:protobuf"],
        visibility = visibility,
    )
