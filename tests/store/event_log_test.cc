// tests/store/event_log_test.cc
// The event log: daily segments, recovery of every record, a torn tail cut, damage named
// by file and offset (repair cuts it), retention by age and by bytes.
#include "store/event_log.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test_util.h"

namespace credit::store {
namespace {

using testing::NoSyncFileOps;
using testing::TempDir;

constexpr std::int64_t kDayMs = 86'400'000;
constexpr std::int64_t kJan1Ms = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

struct Read {
  std::uint64_t seq;
  std::int64_t at_ms;
  std::string payload;
  bool operator==(const Read&) const = default;
};

// A record read at open, with its place.
struct Placed {
  std::uint64_t seq;
  std::string payload;
  EventPlace place;
};

NoSyncFileOps g_ops;

Result<std::unique_ptr<EventLog>> open_log(const std::string& dir, std::vector<Read>* out,
                                           EventLogOptions options = {}) {
  options.file_ops = &g_ops;
  return EventLog::open(dir, options,
                        [out](std::uint64_t seq, std::int64_t at, std::string_view p, EventPlace) {
                          out->push_back({seq, at, std::string(p)});
                          return ok_status();
                        });
}

std::vector<Read> write_days(const std::string& dir, int days, int per_day) {
  std::vector<Read> written;
  std::vector<Read> ignored;
  auto log = open_log(dir, &ignored);
  EXPECT_TRUE(log.ok());
  std::uint64_t seq = 1;
  for (int d = 0; d < days; ++d) {
    for (int i = 0; i < per_day; ++i) {
      Read r{seq, kJan1Ms + d * kDayMs + i * 1000, "event-" + std::to_string(seq)};
      EXPECT_TRUE((*log)->append(r.seq, r.at_ms, r.payload).ok());
      written.push_back(r);
      ++seq;
    }
  }
  EXPECT_TRUE((*log)->sync().ok());
  return written;
}

std::uintmax_t file_size(const std::string& path) {
  return std::filesystem::file_size(path);
}

TEST(EventLog, RecordsComeBackInDailySegments) {
  TempDir tmp;
  std::vector<Read> written = write_days(tmp.path(), 3, 5);
  EXPECT_TRUE(std::filesystem::exists(tmp.file("events-2026-01-01.log")));
  EXPECT_TRUE(std::filesystem::exists(tmp.file("events-2026-01-03.log")));
  std::vector<Read> read;
  auto log = open_log(tmp.path(), &read);
  ASSERT_TRUE(log.ok()) << log.error().message;
  EXPECT_EQ(read, written);
  EXPECT_EQ((*log)->last_seq(), 15u);
  // Appends continue after the last record.
  ASSERT_TRUE((*log)->append(16, kJan1Ms + 2 * kDayMs + 99'000, "sixteen").ok());
  ASSERT_TRUE((*log)->sync().ok());
  read.clear();
  log = open_log(tmp.path(), &read);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(read.size(), 16u);
  EXPECT_EQ(read.back().payload, "sixteen");
}

TEST(EventLog, AFailingLastRecordIsATornTailAndIsCut) {
  TempDir tmp;
  std::vector<Read> written = write_days(tmp.path(), 1, 4);
  const std::string path = tmp.file("events-2026-01-01.log");
  const std::uintmax_t size = file_size(path);
  std::filesystem::resize_file(path, size - 3);  // the last record cut short
  std::vector<Read> read;
  auto log = open_log(tmp.path(), &read);
  ASSERT_TRUE(log.ok()) << log.error().message;
  written.pop_back();
  EXPECT_EQ(read, written);
  ASSERT_EQ((*log)->recovery().torn_tails.size(), 1u);
  EXPECT_EQ((*log)->last_seq(), 3u);
  // Zeros after the records (a crash after the size grew) are a torn tail too.
  log->reset();
  std::filesystem::resize_file(path, file_size(path) + 4096);
  read.clear();
  log = open_log(tmp.path(), &read);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(read, written);
  // Cut back to the end of the third record: the fourth was "event-4".
  EXPECT_EQ(file_size(path), size - (kEventRecordHeaderBytes + 7));
}

TEST(EventLog, AFailingRecordFollowedByAnIntactOneIsDamageNamingFileAndOffset) {
  TempDir tmp;
  std::vector<Read> written = write_days(tmp.path(), 1, 4);
  const std::string path = tmp.file("events-2026-01-01.log");
  // Flip a payload byte of the second record.
  const std::uint64_t second = kEventSegmentHeaderBytes + kEventRecordHeaderBytes + 7;
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(second + kEventRecordHeaderBytes + 1));
    f.put('X');
  }
  std::vector<Read> read;
  auto log = open_log(tmp.path(), &read);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().detail("offset"), std::to_string(second));
  EXPECT_NE(log.error().detail("file").find("events-2026-01-01.log"), std::string_view::npos);

  read.clear();
  EventLogOptions repair;
  repair.repair = true;
  log = open_log(tmp.path(), &read, repair);
  ASSERT_TRUE(log.ok()) << log.error().message;
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ((*log)->recovery().repaired.size(), 1u);
  EXPECT_EQ(file_size(path), second);
}

TEST(EventLog, AnUnknownSegmentVersionIsRefusedEvenWithRepair) {
  TempDir tmp;
  write_days(tmp.path(), 1, 1);
  const std::string path = tmp.file("events-2026-01-01.log");
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f.put(static_cast<char>(kEventLogVersion + 1));
  }
  std::vector<Read> read;
  EventLogOptions repair;
  repair.repair = true;
  auto log = open_log(tmp.path(), &read, repair);
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.error().message.find("version"), std::string::npos);
}

TEST(EventLog, RetentionDeletesByAgeThenByBytesButNeverTheCurrentSegment) {
  TempDir tmp;
  write_days(tmp.path(), 5, 10);  // 2026-01-01 .. 2026-01-05
  std::vector<Read> read;
  EventLogOptions options;
  options.retain_days = 2;
  auto log = open_log(tmp.path(), &read, options);
  ASSERT_TRUE(log.ok());
  // At 2026-01-06T00:00Z with 2 days kept: the days ending by 2026-01-04T00:00Z go.
  auto deleted = (*log)->enforce_retention(kJan1Ms + 5 * kDayMs);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 3u);
  EXPECT_FALSE(std::filesystem::exists(tmp.file("events-2026-01-03.log")));
  EXPECT_TRUE(std::filesystem::exists(tmp.file("events-2026-01-04.log")));

  ASSERT_TRUE((*log)->append(51, kJan1Ms + 5 * kDayMs, "today").ok());
  ASSERT_TRUE((*log)->sync().ok());
  // A budget of one byte keeps only the segment being written.
  read.clear();
  log->reset();
  options.bytes_max = 1;
  log = open_log(tmp.path(), &read, options);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->append(52, kJan1Ms + 5 * kDayMs + 1, "later").ok());
  deleted = (*log)->enforce_retention(kJan1Ms + 5 * kDayMs);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 2u);
  EXPECT_TRUE(std::filesystem::exists(tmp.file("events-2026-01-06.log")));
  EXPECT_FALSE(std::filesystem::exists(tmp.file("events-2026-01-05.log")));
}

TEST(EventLog, RetentionKeepsTheSegmentHoldingTheNewestEvent) {
  TempDir tmp;
  write_days(tmp.path(), 3, 4);  // seq 1-4 on Jan 1, 5-8 on Jan 2, 9-12 on Jan 3
  std::vector<Read> read;
  EventLogOptions options;
  options.retain_days = 2;
  {
    // Just opened (nothing written yet, so no current segment), a month later: every day
    // is past its age, but Jan 3 holds the newest event and stays.
    auto log = open_log(tmp.path(), &read, options);
    ASSERT_TRUE(log.ok());
    auto deleted = (*log)->enforce_retention(kJan1Ms + 30 * kDayMs);
    ASSERT_TRUE(deleted.ok());
    EXPECT_EQ(*deleted, 2u);
    EXPECT_EQ((*log)->last_seq(), 12u);
    EXPECT_TRUE(std::filesystem::exists(tmp.file("events-2026-01-03.log")));
    EXPECT_FALSE(std::filesystem::exists(tmp.file("events-2026-01-02.log")));
    // Then today's event, and an imported one of an older day, the newest.
    ASSERT_TRUE((*log)->append(13, kJan1Ms + 31 * kDayMs, "today").ok());
    ASSERT_TRUE((*log)->append(14, kJan1Ms + 10 * kDayMs, "imported").ok());
    ASSERT_TRUE((*log)->sync().ok());
  }
  // Opened again with a budget of one byte: the older day holding the newest event is the
  // one kept; today's goes with Jan 3.
  read.clear();
  options.bytes_max = 1;
  auto log = open_log(tmp.path(), &read, options);
  ASSERT_TRUE(log.ok());
  auto deleted = (*log)->enforce_retention(kJan1Ms + 31 * kDayMs);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 2u);
  EXPECT_TRUE(std::filesystem::exists(tmp.file("events-2026-01-11.log")));
  EXPECT_FALSE(std::filesystem::exists(tmp.file("events-2026-02-01.log")));
  EXPECT_FALSE(std::filesystem::exists(tmp.file("events-2026-01-03.log")));
  EXPECT_EQ((*log)->last_seq(), 14u);
}

TEST(EventLog, ReadsEachRecordBackByItsPlaceWhereverItLies) {
  TempDir tmp;
  write_days(tmp.path(), 2, 3);  // seq 1-3 on Jan 1, 4-6 on Jan 2
  std::vector<Placed> found;
  EventLogOptions options;
  options.file_ops = &g_ops;
  options.retain_days = 3;
  auto log = EventLog::open(
      tmp.path(), options, [&](std::uint64_t seq, std::int64_t, std::string_view p, EventPlace at) {
        found.push_back({seq, std::string(p), at});
        return ok_status();
      });
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(found.size(), 6u);
  EventLog& l = **log;
  // Recovered records, from the files.
  for (const Placed& r : found) EXPECT_EQ(l.read(r.place, r.seq), r.payload) << r.seq;
  // The wrong number at a place, or a place inside a record, is not that record.
  EXPECT_EQ(l.read(found[1].place, 1), std::nullopt);
  EXPECT_EQ(l.read(found[1].place + 1, 2), std::nullopt);
  EXPECT_EQ(l.read(found[1].place + (1ULL << 39), 2), std::nullopt);  // past the end
  // Appended: still in the write buffer, then flushed, then on a new day.
  std::vector<Placed> appended;
  const std::string large(300'000, 'x');  // four of them fill the 1 MiB buffer: a flush
  for (std::uint64_t seq = 7; seq <= 14; ++seq) {
    const std::int64_t at = kJan1Ms + (seq < 12 ? 1 : 2) * kDayMs + static_cast<std::int64_t>(seq);
    std::string payload = "p" + std::to_string(seq) + (seq % 3 == 0 ? large : "");
    auto place = l.append(seq, at, payload);
    ASSERT_TRUE(place.ok());
    appended.push_back({seq, payload, *place});
    // Each one reads back at once, wherever it is (buffer or file), as do the others.
    for (const Placed& r : appended) ASSERT_EQ(l.read(r.place, r.seq), r.payload) << r.seq;
  }
  ASSERT_TRUE(l.sync().ok());
  for (const Placed& r : appended) EXPECT_EQ(l.read(r.place, r.seq), r.payload) << r.seq;
  for (const Placed& r : found) EXPECT_EQ(l.read(r.place, r.seq), r.payload) << r.seq;
  // Retention deletes Jan 1 and Jan 2: their records are gone, Jan 3's stay.
  auto deleted = l.enforce_retention(kJan1Ms + 5 * kDayMs);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 2u);
  for (const Placed& r : found) EXPECT_EQ(l.read(r.place, r.seq), std::nullopt) << r.seq;
  for (const Placed& r : appended) {
    EXPECT_EQ(l.read(r.place, r.seq),
              r.seq >= 12 ? std::optional<std::string_view>(r.payload) : std::nullopt)
        << r.seq;
  }
}

// Retention of tens of thousands of days at once (a clock moved on by centuries left some
// 83,000): each deleted day was erased from the front of the segment list, and from the
// list of unsynced files, one at a time, and held the ledger thread some 90 s. Here
// 20,000 days, written by this log (so every one is still unsynced), with the newest event
// imported into a day in the middle: every old day goes but that one and the last 100.
TEST(EventLog, RetentionOfTwentyThousandDaysKeepsTheRecentDaysAndTheNewestEventsDay) {
  constexpr int kDays = 20'000;
  constexpr int kImportedDay = 10'000;
  TempDir tmp;
  std::vector<Read> ignored;
  EventLogOptions options;
  options.retain_days = 100;
  auto opened = open_log(tmp.path(), &ignored, options);
  ASSERT_TRUE(opened.ok());
  EventLog& log = **opened;
  std::vector<EventPlace> places;
  for (int d = 0; d < kDays; ++d) {
    auto place = log.append(static_cast<std::uint64_t>(d) + 1, kJan1Ms + d * kDayMs, "e");
    ASSERT_TRUE(place.ok());
    places.push_back(*place);
  }
  auto imported = log.append(kDays + 1, kJan1Ms + kImportedDay * kDayMs + 1, "imported");
  ASSERT_TRUE(imported.ok());
  ASSERT_TRUE(log.flush().ok());

  // At the start of day 20,000 with 100 days kept, days 0 .. 19,899 are past their age.
  auto deleted = log.enforce_retention(kJan1Ms + kDays * kDayMs);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 19'899u);

  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(tmp.path())) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 101u);
  const std::string imported_day = EventLog::segment_name(kJan1Ms + kImportedDay * kDayMs);
  EXPECT_TRUE(std::filesystem::exists(tmp.file(imported_day)));
  EXPECT_FALSE(std::filesystem::exists(tmp.file(EventLog::segment_name(kJan1Ms))));
  EXPECT_FALSE(
      std::filesystem::exists(tmp.file(EventLog::segment_name(kJan1Ms + 19'899 * kDayMs))));
  EXPECT_TRUE(std::filesystem::exists(tmp.file(EventLog::segment_name(kJan1Ms + 19'900 * kDayMs))));
  // The log's own view agrees with the directory: what is left to sync, the bytes, reads.
  auto unsynced = log.take_unsynced();
  ASSERT_TRUE(unsynced.ok());
  EXPECT_EQ(unsynced->size(), 101u);
  for (const std::string& path : *unsynced) EXPECT_TRUE(std::filesystem::exists(path)) << path;
  std::uint64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(tmp.path())) {
    bytes += entry.file_size();
  }
  EXPECT_EQ(log.bytes(), bytes);
  EXPECT_EQ(log.read(places[0], 1), std::nullopt);
  EXPECT_EQ(log.read(places[19'899], 19'900), std::nullopt);
  EXPECT_EQ(log.read(places[19'900], 19'901), "e");
  EXPECT_EQ(log.read(*imported, kDays + 1), "imported");
  // Appends go on, to a day kept and to a new one, and a reopen reads all 104 records.
  ASSERT_TRUE(log.append(kDays + 2, kJan1Ms + (kDays - 1) * kDayMs + 5, "late").ok());
  ASSERT_TRUE(log.append(kDays + 3, kJan1Ms + kDays * kDayMs, "today").ok());
  ASSERT_TRUE(log.sync().ok());
  opened->reset();
  std::vector<Read> read;
  auto reopened = open_log(tmp.path(), &read, options);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(read.size(), 100u + 2u + 2u);
  EXPECT_EQ((*reopened)->last_seq(), static_cast<std::uint64_t>(kDays) + 3);
}

}  // namespace
}  // namespace credit::store
