// Google Benchmark: the CPU cost of what a cached hit does besides the Redis round trip.
#include <benchmark/benchmark.h>

#include "bench_profile.hpp"
#include "tempest/cache/codec.hpp"
#include "tempest/cache/key.hpp"
#include "tempest/redis/command.hpp"
#include "tempest/redis/detail/cluster_keys.hpp"

#include <atomic>
#include <memory>

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

// Routing a command on a Redis Cluster: read the encoded command's arguments, find its keys
// (the command table), CRC16 of the key (hash tag rule), and the slot table's entry.
void ClusterRouteGet(benchmark::State& state) {
  namespace rd = tempest::redis::detail;
  const tempest::redis::Command c =
      tempest::redis::cmd("GET", "users:get_user_profile:5f11deb66da1aa69390b0572cc7a6b39");
  auto table = std::make_unique<std::atomic<const void*>[]>(rd::kSlots);
  static const int shard = 0;
  for (std::size_t i = 0; i < rd::kSlots; ++i)
    table[i].store(&shard, std::memory_order_relaxed);
  rd::CommandReader reader;
  for (auto _ : state) {
    reader.reset(c.encoded());
    const rd::SlotOf s = rd::command_slot(reader.next());
    const void* owner = table[s.slot & (rd::kSlots - 1)].load(std::memory_order_acquire);
    benchmark::DoNotOptimize(owner);
  }
}
BENCHMARK(ClusterRouteGet);

// The figure: CRC16 (with the hash tag rule) of that key and the slot table's entry.
void ClusterSlotLookup(benchmark::State& state) {
  namespace rd = tempest::redis::detail;
  const std::string key = "users:get_user_profile:5f11deb66da1aa69390b0572cc7a6b39";
  auto table = std::make_unique<std::atomic<const void*>[]>(rd::kSlots);
  static const int shard = 0;
  for (std::size_t i = 0; i < rd::kSlots; ++i)
    table[i].store(&shard, std::memory_order_relaxed);
  for (auto _ : state) {
    const void* owner = table[rd::key_slot(key)].load(std::memory_order_acquire);
    benchmark::DoNotOptimize(owner);
  }
}
BENCHMARK(ClusterSlotLookup);

BENCHMARK_MAIN();
