// int4mm: the command-line program.
//
//   int4mm bench     times every kernel of a backend on a set of shapes and
//                    prints a table (and, with --json, the same as JSON)
//   int4mm selftest  a quick correctness pass on every backend present
//
// Examples:
//   int4mm bench                                   # Llama-3-8B layers, M = 1,16,256
//   int4mm bench --backend cpu --shapes 8192x28672 --m 1,2,4,8 --dtype fp16
//   int4mm bench --json bench-results.json
//
// This file parses and prints only; the measuring is in bench_cpu.cpp and
// bench_cuda.cu behind tools/bench.h. Exit codes: 0 success, 1 an int4mm
// error or a failed self-test, 2 a bad command line.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench.h"

namespace {

using int4mm::Backend;
using int4mm::DType;
using int4mm::Error;
using int4mm::bench::Record;
using int4mm::bench::Shape;

// A bad value on the command line that CLI11's checks cannot see (a shape
// string, a K that is not a multiple of the group size): exit code 2.
struct UsageError : Error {
  using Error::Error;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream is(s);
  while (std::getline(is, part, sep)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

int64_t parse_positive(const std::string& text, const char* what, int64_t min_value) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || v < min_value) {
    throw UsageError(std::string("bench: ") + what + " must be an integer >= " +
                std::to_string(min_value) + ", got '" + text + "'");
  }
  return v;
}

// "8192x28672,4096x4096" -> {K, N} pairs.
std::vector<Shape> parse_shapes(const std::string& text) {
  std::vector<Shape> shapes;
  for (const std::string& item : split(text, ',')) {
    const size_t x = item.find('x');
    if (x == std::string::npos) {
      throw UsageError("bench: --shapes takes KxN items like 4096x28672, got '" + item + "'");
    }
    shapes.push_back({parse_positive(item.substr(0, x), "K in --shapes", 1),
                      parse_positive(item.substr(x + 1), "N in --shapes", 1)});
  }
  if (shapes.empty()) throw UsageError("bench: --shapes must name at least one KxN shape");
  return shapes;
}

std::vector<int64_t> parse_ms(const std::string& text) {
  std::vector<int64_t> ms;
  for (const std::string& item : split(text, ',')) ms.push_back(parse_positive(item, "--m", 0));
  if (ms.empty()) throw UsageError("bench: --m must name at least one M");
  return ms;
}

DType parse_dtype(const std::string& name) {
  if (name == "bf16") return DType::kBFloat16;
  if (name == "fp16") return DType::kFloat16;
  if (name == "fp32") return DType::kFloat32;
  throw UsageError("bench: --dtype must be bf16, fp16 or fp32, got '" + name + "'");
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(std::min(colon + 2, line.size()));
    }
  }
  return "unknown";
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// Prints the records as an aligned table: fixed columns first, then one
// column per extra field that any record carries.
void print_table(const std::vector<Record>& records) {
  std::set<std::string> extra_keys;
  double max_flop_rate = 0;
  for (const Record& r : records) {
    for (const auto& kv : r.extra) {
      if (kv.first != "pct_of_bandwidth") extra_keys.insert(kv.first);
    }
    if (r.time_us > 0) max_flop_rate = std::max(max_flop_rate, r.flops / r.time_us * 1e-6);
  }
  // One unit for the whole column: TFLOP/s once any kernel reaches 1 TFLOP/s.
  const bool tera = max_flop_rate >= 1.0;

  std::vector<std::string> header{"backend", "kernel", "dtype", "M", "N", "K", "time us",
                                  "weights GB/s", tera ? "TFLOP/s" : "GFLOP/s", "% of bw",
                                  "max rel err"};
  header.insert(header.end(), extra_keys.begin(), extra_keys.end());
  std::vector<std::vector<std::string>> rows{header};
  for (const Record& r : records) {
    const double rate = r.time_us > 0 ? r.flops / r.time_us * 1e-6 : 0;  // TFLOP/s
    const auto pct = r.extra.find("pct_of_bandwidth");
    std::vector<std::string> row{
        r.backend,
        r.kernel,
        int4mm::dtype_name(r.dtype),
        std::to_string(r.m),
        std::to_string(r.n),
        std::to_string(r.k),
        format("%.2f", r.time_us),
        r.time_us > 0 ? format("%.1f", r.weight_bytes / r.time_us * 1e-3) : "-",
        format(tera ? "%.2f" : "%.1f", tera ? rate : rate * 1e3),
        pct != r.extra.end() ? format("%.1f", pct->second) : "-",
        r.max_rel_error >= 0 ? format("%.1e", r.max_rel_error) : "-"};
    for (const std::string& key : extra_keys) {
      const auto it = r.extra.find(key);
      row.push_back(it != r.extra.end() ? format("%.4g", it->second) : "-");
    }
    rows.push_back(row);
  }
  std::vector<size_t> width(header.size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (size_t i = 0; i < rows[r].size(); ++i) {
      // Text columns left-aligned, numbers right-aligned.
      const std::string& cell = rows[r][i];
      const std::string pad(width[i] - cell.size(), ' ');
      line += (i < 3 ? cell + pad : pad + cell) + (i + 1 < rows[r].size() ? "  " : "");
    }
    std::printf("%s\n", line.c_str());
    if (r == 0) std::printf("%s\n", std::string(line.size(), '-').c_str());
  }
  std::set<double> bandwidths;
  for (const Record& r : records) {
    if (r.bandwidth_gbs > 0) bandwidths.insert(r.bandwidth_gbs);
  }
  for (double bw : bandwidths) std::printf("measured bandwidth: %.1f GB/s\n", bw);
}

nlohmann::json to_json(const Record& r) {
  nlohmann::json j{{"backend", r.backend},
                   {"kernel", r.kernel},
                   {"dtype", int4mm::dtype_name(r.dtype)},
                   {"group_size", r.group_size},
                   {"m", r.m},
                   {"n", r.n},
                   {"k", r.k},
                   {"time_us", r.time_us},
                   {"weight_bytes", r.weight_bytes},
                   {"bytes", r.bytes},
                   {"flops", r.flops},
                   {"max_rel_error", r.max_rel_error},
                   {"bandwidth_gbs", r.bandwidth_gbs}};
  for (const auto& kv : r.extra) j[kv.first] = kv.second;
  return j;
}

void write_json(const std::string& path, const std::string& command_line,
                const int4mm::bench::Config& config, const std::vector<Record>& records) {
  nlohmann::json doc;
  doc["command"] = command_line;
  doc["date"] = utc_now();
  doc["machine"] = {{"hostname", host_name()},
                    {"cpu_model", cpu_model()},
                    {"cpu_threads", std::thread::hardware_concurrency()},
                    {"cuda_available", int4mm::backend_available(Backend::kCuda)}};
  doc["config"] = {{"backend", int4mm::backend_name(config.backend)},
                   {"dtype", int4mm::dtype_name(config.dtype)},
                   {"group_size", config.group_size},
                   {"threads", config.threads},
                   {"repeats", config.repeats}};
  doc["records"] = nlohmann::json::array();
  for (const Record& r : records) doc["records"].push_back(to_json(r));
  std::ofstream out(path);
  if (!out) throw Error("bench: cannot open --json file '" + path + "' for writing");
  out << doc.dump(2) << "\n";
  if (!out) throw Error("bench: writing --json file '" + path + "' failed");
}

struct BenchArgs {
  std::string backend = "auto";
  std::string shapes = "4096x6144,4096x4096,4096x28672,14336x4096";  // Llama-3-8B layers
  std::string ms = "1,16,256";
  std::string dtype = "bf16";
  int64_t group_size = 128;
  int threads = 0;
  int repeats = 20;
  std::string json;
};

int run_bench(const BenchArgs& args, const std::string& command_line) {
  int4mm::bench::Config config;
  if (args.backend == "auto") {
    config.backend = int4mm::backend_available(Backend::kCuda) ? Backend::kCuda : Backend::kCpu;
  } else {
    config.backend = int4mm::parse_backend(args.backend);
  }
  config.shapes = parse_shapes(args.shapes);
  config.ms = parse_ms(args.ms);
  config.dtype = parse_dtype(args.dtype);
  config.group_size = args.group_size;
  config.threads = args.threads;
  config.repeats = args.repeats;
  for (const Shape& s : config.shapes) {
    if (s.k % config.group_size != 0) {
      throw UsageError("bench: K must be a multiple of --group-size=" +
                  std::to_string(config.group_size) + ", got K=" + std::to_string(s.k));
    }
  }

  std::printf("int4mm bench: backend %s, %s, group_size %ld, machine %s (%s)\n",
              int4mm::backend_name(config.backend), int4mm::dtype_name(config.dtype),
              long(config.group_size), host_name().c_str(), cpu_model().c_str());
  std::fflush(stdout);
  const std::vector<Record> records = config.backend == Backend::kCuda
                                          ? int4mm::bench::run_cuda(config)
                                          : int4mm::bench::run_cpu(config);
  print_table(records);
  if (!args.json.empty()) {
    write_json(args.json, command_line, config, records);
    std::printf("wrote %zu records to %s\n", records.size(), args.json.c_str());
  }
  return 0;
}

int run_selftest() {
  int failures = int4mm::bench::selftest_cpu();
  if (int4mm::backend_available(Backend::kCuda)) {
    failures += int4mm::bench::selftest_cuda();
  } else {
    std::printf("skip cuda: not built or no GPU present\n");
  }
  std::printf("selftest: %d failure%s\n", failures, failures == 1 ? "" : "s");
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"int4mm: int4 weight-only quantized matmul (W4A16) -- benchmark and self-test"};
  app.require_subcommand(1);

  BenchArgs bench_args;
  CLI::App* bench = app.add_subcommand("bench", "Time the kernels of one backend and print a table");
  bench->add_option("--backend", bench_args.backend, "cpu, cuda, or auto (cuda when a GPU is present)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  bench->add_option("--shapes", bench_args.shapes, "Comma-separated KxN weight shapes")
      ->capture_default_str();
  bench->add_option("--m", bench_args.ms, "Comma-separated numbers of rows of A")
      ->capture_default_str();
  bench->add_option("--dtype", bench_args.dtype, "Activation dtype: bf16, fp16 or fp32")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}))
      ->capture_default_str();
  bench->add_option("--group-size", bench_args.group_size, "Quantization group size")
      ->check(CLI::IsMember({32, 64, 128, 256}))
      ->capture_default_str();
  bench->add_option("--threads", bench_args.threads, "CPU worker threads (0 = cores present)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  bench->add_option("--repeats", bench_args.repeats, "Timed repetitions; the median is reported")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench->add_option("--json", bench_args.json, "Also write the records as JSON to this file");

  CLI::App* selftest =
      app.add_subcommand("selftest", "Check every backend present against the float64 reference");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; all else is usage.
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  std::string command_line;
  for (int i = 0; i < argc; ++i) command_line += (i ? " " : "") + std::string(argv[i]);

  try {
    if (bench->parsed()) return run_bench(bench_args, command_line);
    if (selftest->parsed()) return run_selftest();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "int4mm: %s\nRun with --help for more information.\n", e.what());
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "int4mm: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "int4mm: unexpected error: %s\n", e.what());
    return 1;
  }
  return 2;
}
