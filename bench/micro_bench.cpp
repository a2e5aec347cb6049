// Google Benchmark: the CPU cost of what a cached hit does besides the Redis round trip.
#include <benchmark/benchmark.h>

#include "bench_profile.hpp"
#include "tempest/cache/codec.hpp"
#include "tempest/cache/key.hpp"

namespace tc = tempest::cache;

namespace {

using tempest::bench::Profile;  // the struct `tempest bench --mode cached` caches

// Key derivation for one short string argument: JSON text, SHA-256, key string.
void KeyOneShortString(benchmark::State& state) {
  const std::string user_id = "123";
  for (auto _ : state) {
    std::string key = tc::make_key("users:", "get_user_profile", tc::encode_args(user_id));
    benchmark::DoNotOptimize(key);
  }
}
BENCHMARK(KeyOneShortString);

// Decoding the 5-field described struct from what the cache stores.
void DecodeFiveFieldStruct(benchmark::State& state) {
  const std::string payload =
      tc::JsonCodec<Profile>::encode(Profile{"123", "Ana", "ana@example.com", 37, 9.5});
  for (auto _ : state) {
    Profile p = tc::JsonCodec<Profile>::decode(payload);
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(DecodeFiveFieldStruct);

// The same, from what Python's json.dumps writes for that dict.
void DecodeFiveFieldStructPythonSpacing(benchmark::State& state) {
  const std::string payload =
      "{\"id\": \"123\", \"name\": \"Ana\", \"email\": \"ana@example.com\", \"age\": 37, "
      "\"score\": 9.5}";
  for (auto _ : state) {
    Profile p = tc::JsonCodec<Profile>::decode(payload);
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(DecodeFiveFieldStructPythonSpacing);

void EncodeFiveFieldStruct(benchmark::State& state) {
  const Profile p{"123", "Ana", "ana@example.com", 37, 9.5};
  for (auto _ : state) {
    std::string s = tc::JsonCodec<Profile>::encode(p);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(EncodeFiveFieldStruct);

}  // namespace

BENCHMARK_MAIN();
