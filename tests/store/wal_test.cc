// tests/store/wal_test.cc
// Tests of src/store/wal.cc: records come back in order after a reopen, a torn tail is cut,
// damage stops the open naming the file and offset, repair cuts at the damage, a write
// or sync failure fails the log for good, and a range is read beside a live log without
// changing it.
// Owns: WAL tests. Does not: test group commit (group_commit_test.cc) or crashes of a real
// process (crash_test.cc).
#include "store/wal.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>

#include "store/wal_format.h"
#include "test_util.h"

namespace credit::store {
namespace {

using testing::copy_dir;
using testing::flip_byte;
using testing::open_wal;
using testing::payload_of;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

constexpr std::uint64_t kSmallSegmentBytes = 4096;

WalOptions small_segments() {
  WalOptions options;
  options.segment_bytes = kSmallSegmentBytes;
  return options;
}

// Appends payload_of(i) for i in [from, to), syncing every `sync_every` appends and at the end.
void append_range(Wal& wal, std::uint64_t from, std::uint64_t to, std::uint64_t sync_every = 5) {
  for (std::uint64_t i = from; i < to; ++i) {
    auto lsn = wal.append(payload_of(i));
    ASSERT_TRUE(lsn.ok()) << lsn.error().message;
    ASSERT_EQ(*lsn, i);
    if ((i + 1) % sync_every == 0) {
      ASSERT_TRUE(wal.sync().ok());
    }
  }
  ASSERT_TRUE(wal.sync().ok());
}

void expect_records(const testing::Replayed& replayed, std::uint64_t from, std::uint64_t to) {
  ASSERT_EQ(replayed.records.size(), to - from);
  for (std::uint64_t i = from; i < to; ++i) {
    EXPECT_EQ(replayed.records[i - from].first, i);
    EXPECT_EQ(replayed.records[i - from].second, payload_of(i));
  }
}

// [start, end) of every record of a segment file, read with the format's own decoder.
std::vector<std::pair<std::uint64_t, std::uint64_t>> records_of(const std::string& path) {
  const std::string bytes = read_bytes(path);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> records;
  std::uint64_t pos = kSegmentHeaderBytes;
  while (pos + kRecordHeaderBytes <= bytes.size()) {
    const RecordHeader header =
        decode_record_header(reinterpret_cast<const unsigned char*>(bytes.data() + pos));
    if (header.checksum == 0 && header.length == 0 && header.type == 0) break;
    records.emplace_back(pos, pos + kRecordHeaderBytes + header.length);
    pos += kRecordHeaderBytes + header.length;
  }
  return records;
}

std::vector<std::string> segment_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (parse_segment_file_name(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string unquoted(std::string_view json_string) {
  if (json_string.size() >= 2 && json_string.front() == '"') {
    json_string = json_string.substr(1, json_string.size() - 2);
  }
  return std::string(json_string);
}

TEST(Wal, AppendSyncReopenReturnsEveryRecordInOrderAcrossSegments) {
  TempDir dir;
  {
    auto opened = open_wal(dir.path(), small_segments());
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_TRUE(opened->records.empty());
    append_range(*opened->wal, 0, 300);
    EXPECT_GE(opened->wal->segment_count(), 4u);
    ASSERT_TRUE(opened->wal->close().ok());
  }
  {
    auto opened = open_wal(dir.path(), small_segments());
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    expect_records(*opened, 0, 300);
    EXPECT_TRUE(opened->wal->recovery().ended_with_shutdown);
    EXPECT_FALSE(opened->wal->recovery().torn_tail);
    EXPECT_EQ(opened->wal->next_lsn(), 300u);
    append_range(*opened->wal, 300, 350);
    // No close: a crash after the last sync.
  }
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 350);
  EXPECT_FALSE(opened->wal->recovery().ended_with_shutdown);
}

TEST(Wal, PayloadLargerThanASegmentIsRefusedWithoutFailingTheLog) {
  TempDir dir;
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->wal->payload_bytes_max(), 4096u - 40u - 13u);
  auto refused = opened->wal->append(std::string(4044, 'x'));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidRequest);
  EXPECT_TRUE(opened->wal->append(std::string(4043, 'x')).ok());
  EXPECT_TRUE(opened->wal->sync().ok());
}

// The rule documented in wal.h: a segment file cut short reads as if the missing bytes were
// zeros, so a cut inside a record is a torn tail and a cut on a record boundary is a clean
// end. Either way the open recovers exactly the records that end at or before the cut.
void check_every_cut_of_the_last_three_records(bool cut_by_truncating) {
  // Hundreds of opens: syncs are skipped (what is checked is what recovery reads).
  static testing::NoSyncFileOps no_sync;
  WalOptions options = small_segments();
  options.file_ops = &no_sync;
  TempDir master;
  constexpr std::uint64_t kRecords = 40;
  {
    auto opened = open_wal(master.path(), options);
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 0, kRecords);
  }
  // The newest segment holding records (a preallocated all-zero one may follow it).
  std::string last;
  for (const std::string& name : segment_files(master.path())) {
    if (!records_of(master.file(name)).empty()) last = name;
  }
  const auto records = records_of(master.file(last));
  ASSERT_GE(records.size(), 3u);
  const std::uint64_t first_in_last = kRecords - records.size();
  const std::size_t from_record = records.size() - 3;

  TempDir work;
  int torn = 0;
  int clean = 0;
  for (std::uint64_t cut = records[from_record].first; cut <= records.back().second; ++cut) {
    copy_dir(master.path(), work.path());
    const std::string path = work.file(last);
    if (cut_by_truncating) {
      ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(cut)), 0);
    } else {
      std::string bytes = read_bytes(path);
      std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(cut), bytes.end(), '\0');
      write_bytes(path, bytes);
    }
    std::uint64_t intact = first_in_last;
    std::optional<std::uint64_t> cut_record_start;
    for (const auto& [start, end] : records) {
      if (end <= cut) {
        ++intact;
      } else if (start < cut) {
        cut_record_start = start;
      }
    }
    auto opened = open_wal(work.path(), options);
    ASSERT_TRUE(opened.ok()) << "cut at " << cut << ": " << opened.error().message;
    expect_records(*opened, 0, intact);
    const auto& torn_tail = opened->wal->recovery().torn_tail;
    if (cut_record_start) {
      ++torn;
      ASSERT_TRUE(torn_tail) << "cut at " << cut;
      EXPECT_EQ(torn_tail->file, path);
      EXPECT_EQ(torn_tail->offset, *cut_record_start);
    } else {
      ++clean;
      EXPECT_FALSE(torn_tail) << "cut at " << cut;
    }
    // The log goes on after the cut, and the cut stays cut.
    ASSERT_TRUE(opened->wal->append(payload_of(intact)).ok());
    ASSERT_TRUE(opened->wal->sync().ok());
    opened->wal.reset();
    auto reopened = open_wal(work.path(), options);
    ASSERT_TRUE(reopened.ok()) << "cut at " << cut << ": " << reopened.error().message;
    expect_records(*reopened, 0, intact + 1);
    EXPECT_FALSE(reopened->wal->recovery().torn_tail);
  }
  EXPECT_EQ(clean, 4);  // the three record boundaries and the end
  EXPECT_GT(torn, 60);
}

TEST(Wal, TruncatingTheLastSegmentAtEveryOffsetOfItsLastThreeRecordsRecoversThePrefix) {
  check_every_cut_of_the_last_three_records(true);
}

TEST(Wal, ZeroingTheLastSegmentFromEveryOffsetOfItsLastThreeRecordsRecoversThePrefix) {
  check_every_cut_of_the_last_three_records(false);
}

class WalDamageTest : public ::testing::Test {
 protected:
  // One segment with 30 records; record 10 is flipped in the middle of its payload.
  void SetUp() override {
    WalOptions options;
    options.segment_bytes = 1 << 16;
    options_ = options;
    auto opened = open_wal(dir_.path(), options_);
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 0, 30);
    opened->wal.reset();
    path_ = dir_.file(segment_file_name(0));
    records_ = records_of(path_);
    ASSERT_EQ(records_.size(), 30u);
  }

  TempDir dir_;
  WalOptions options_;
  std::string path_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> records_;
};

TEST_F(WalDamageTest, FlippedByteBeforeGoodRecordsIsAnErrorNamingFileAndOffset) {
  const auto [start, end] = records_[10];
  flip_byte(path_, (start + end) / 2);
  auto opened = open_wal(dir_.path(), options_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, ErrorCode::kStorageFailed);
  EXPECT_EQ(unquoted(opened.error().detail("file")), path_);
  EXPECT_EQ(opened.error().detail("offset"), std::to_string(start));
  EXPECT_NE(opened.error().message.find(path_ + " at offset " + std::to_string(start)),
            std::string::npos)
      << opened.error().message;
}

TEST_F(WalDamageTest, RepairCutsAtTheDamageAndTheLogGoesOn) {
  const auto [start, end] = records_[10];
  flip_byte(path_, (start + end) / 2);
  WalOptions repair = options_;
  repair.repair = true;
  {
    auto opened = open_wal(dir_.path(), repair);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    expect_records(*opened, 0, 10);
    ASSERT_TRUE(opened->wal->recovery().repaired);
    EXPECT_EQ(opened->wal->recovery().repaired->file, path_);
    EXPECT_EQ(opened->wal->recovery().repaired->offset, start);
    ASSERT_TRUE(opened->wal->append(payload_of(10)).ok());
    ASSERT_TRUE(opened->wal->close().ok());
  }
  auto opened = open_wal(dir_.path(), options_);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 11);
}

// A record a snapshot covers is never replayed: with repair, a damaged one is skipped and
// the records after it stay (cutting there lost every acknowledged record after the
// snapshot, and the log then ended before the snapshot's LSN: found by an audit).
TEST_F(WalDamageTest, RepairSkipsADamagedRecordASnapshotCoversAndKeepsTheRest) {
  const auto [start, end] = records_[10];
  flip_byte(path_, (start + end) / 2);
  WalOptions repair = options_;
  repair.repair = true;
  repair.covered_below_lsn = 20;
  {
    auto opened = open_wal(dir_.path(), repair);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    // Every record but the damaged one, each at its own LSN.
    ASSERT_EQ(opened->records.size(), 29u);
    for (std::uint64_t i = 0; i < 29; ++i) {
      const std::uint64_t lsn = i < 10 ? i : i + 1;
      EXPECT_EQ(opened->records[i].first, lsn);
      EXPECT_EQ(opened->records[i].second, payload_of(lsn));
    }
    EXPECT_FALSE(opened->wal->recovery().repaired);
    ASSERT_EQ(opened->wal->recovery().voided.size(), 1u);
    EXPECT_EQ(opened->wal->recovery().voided[0].file, path_);
    EXPECT_EQ(opened->wal->recovery().voided[0].offset, start);
    EXPECT_EQ(opened->wal->next_lsn(), 30u);
    auto lsn = opened->wal->append(payload_of(30));
    ASSERT_TRUE(lsn.ok());
    EXPECT_EQ(*lsn, 30u);
    ASSERT_TRUE(opened->wal->close().ok());
  }
  // Resealed as a voided batch: a plain start that has the snapshot reads past it, and
  // one that needs record 10 (no snapshot covers it) is refused at it.
  WalOptions covered = options_;
  covered.covered_below_lsn = 20;
  auto plain = open_wal(dir_.path(), covered);
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(plain->records.size(), 30u);
  EXPECT_TRUE(plain->wal->recovery().voided.empty());
  EXPECT_EQ(plain->wal->next_lsn(), 31u);
  plain->wal.reset();
  auto needed = open_wal(dir_.path(), options_);
  ASSERT_FALSE(needed.ok());
  EXPECT_EQ(needed.error().detail("offset"), std::to_string(start));
}

TEST_F(WalDamageTest, RepairStillCutsADamagedRecordNoSnapshotCovers) {
  const auto [start, end] = records_[10];
  flip_byte(path_, (start + end) / 2);
  WalOptions repair = options_;
  repair.repair = true;
  repair.covered_below_lsn = 10;  // record 10 is the first the state needs
  auto opened = open_wal(dir_.path(), repair);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 10);
  EXPECT_TRUE(opened->wal->recovery().voided.empty());
  ASSERT_TRUE(opened->wal->recovery().repaired);
  EXPECT_EQ(opened->wal->recovery().repaired->offset, start);
}

TEST_F(WalDamageTest, RepairCutsACoveredRecordWhoseLengthIsDamaged) {
  // Its declared end is no record's start: nothing says where the next record begins.
  const auto [start, end] = records_[10];
  std::string bytes = read_bytes(path_);
  bytes[start + 8] = static_cast<char>(bytes[start + 8] ^ 0x01);
  write_bytes(path_, bytes);
  WalOptions repair = options_;
  repair.repair = true;
  repair.covered_below_lsn = 20;
  auto opened = open_wal(dir_.path(), repair);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 10);
  EXPECT_TRUE(opened->wal->recovery().voided.empty());
  ASSERT_TRUE(opened->wal->recovery().repaired);
}

TEST_F(WalDamageTest, RepairOfALogThatEndsBeforeTheSnapshotRestartsItThere) {
  // The snapshot covers LSNs below 40, but the log holds 30 records (the rest was lost):
  // repair sets the segment aside and the log goes on at 40.
  WalOptions repair = options_;
  repair.repair = true;
  repair.covered_below_lsn = 40;
  {
    auto opened = open_wal(dir_.path(), repair);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    ASSERT_TRUE(opened->wal->recovery().restarted_after_lsn);
    EXPECT_EQ(*opened->wal->recovery().restarted_after_lsn, 30u);
    EXPECT_EQ(opened->wal->recovery().first_lsn, 40u);
    auto lsn = opened->wal->append(payload_of(40));
    ASSERT_TRUE(lsn.ok());
    EXPECT_EQ(*lsn, 40u);
    ASSERT_TRUE(opened->wal->close().ok());
  }
  EXPECT_TRUE(std::filesystem::exists(path_ + ".damaged"));
  WalOptions covered = options_;
  covered.covered_below_lsn = 40;
  auto plain = open_wal(dir_.path(), covered);
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_FALSE(plain->wal->recovery().restarted_after_lsn);
  EXPECT_EQ(plain->wal->recovery().first_lsn, 40u);
  ASSERT_EQ(plain->records.size(), 1u);
  EXPECT_EQ(plain->records[0].first, 40u);
}

TEST_F(WalDamageTest, LengthCorruptedToCoverLaterRecordsIsDamageNotATornTail) {
  const auto [start, end] = records_[28];
  // Record 28's length now runs past the end of the file: everything after its
  // declared end is "zero", but record 29 is intact after it.
  std::string bytes = read_bytes(path_);
  bytes[start + 8 + 3] = 0x7f;
  write_bytes(path_, bytes);
  auto opened = open_wal(dir_.path(), options_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().detail("offset"), std::to_string(start));
  EXPECT_NE(opened.error().message.find("intact record at offset " + std::to_string(end)),
            std::string::npos)
      << opened.error().message;
}

TEST_F(WalDamageTest, ZeroRecordHeaderFollowedByDataIsDamage) {
  const auto [start, end] = records_[5];
  std::string bytes = read_bytes(path_);
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(start),
            bytes.begin() + static_cast<std::ptrdiff_t>(start + kRecordHeaderBytes), '\0');
  write_bytes(path_, bytes);
  auto opened = open_wal(dir_.path(), options_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().detail("offset"), std::to_string(start));
}

TEST_F(WalDamageTest, FailingRecordAfterACleanShutdownIsDamage) {
  {
    auto opened = open_wal(dir_.path(), options_);
    ASSERT_TRUE(opened.ok());
    ASSERT_TRUE(opened->wal->close().ok());  // a shutdown record after record 29
  }
  const std::string bytes = read_bytes(path_);
  const auto records = records_of(path_);
  const std::uint64_t after_shutdown = records.back().second;
  // A torn-looking record right after the shutdown record: nothing was written after a
  // clean close, so these bytes are damage.
  std::string damaged = bytes;
  damaged[after_shutdown] = 1;
  damaged[after_shutdown + 8] = 4;
  damaged[after_shutdown + 12] = 1;
  write_bytes(path_, damaged);
  auto opened = open_wal(dir_.path(), options_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().detail("offset"), std::to_string(after_shutdown));
  EXPECT_NE(opened.error().message.find("shutdown"), std::string::npos);
}

// A preallocated segment after a repair's cut holds no record: it is not damage, so it is
// deleted instead of being kept aside as "<name>.damaged" (64 MiB of zeros in creditd, that
// nothing ever deleted: found by an audit). Only a segment with records is kept aside.
TEST_F(WalDamageTest, RepairDeletesTheUnusedSegmentsAfterItsCutAndKeepsTheOthersAside) {
  const std::string preallocated = dir_.file(segment_file_name(1));
  ASSERT_EQ(read_bytes(preallocated), std::string(options_.segment_bytes, '\0'));
  // Segment 2: a header and nothing after it (begun, no record yet). Segment 3: records.
  std::string header_only(options_.segment_bytes, '\0');
  SegmentHeader header;
  header.segment_number = 2;
  header.first_lsn = 30;
  encode_segment_header(header, reinterpret_cast<unsigned char*>(header_only.data()));
  write_bytes(dir_.file(segment_file_name(2)), header_only);
  write_bytes(dir_.file(segment_file_name(3)), read_bytes(path_));
  const auto [start, end] = records_[10];
  flip_byte(path_, (start + end) / 2);
  WalOptions repair = options_;
  repair.repair = true;
  repair.preallocate_in_background = false;
  auto opened = open_wal(dir_.path(), repair);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 10);
  ASSERT_TRUE(opened->wal->recovery().repaired);
  EXPECT_EQ(opened->wal->recovery().repaired->offset, start);
  const std::string aside = dir_.file(segment_file_name(3)) + ".damaged";
  EXPECT_EQ(opened->wal->recovery().set_aside, std::vector<std::string>{aside});
  EXPECT_TRUE(std::filesystem::exists(aside));
  EXPECT_FALSE(std::filesystem::exists(preallocated + ".damaged"));
  EXPECT_FALSE(std::filesystem::exists(dir_.file(segment_file_name(2)) + ".damaged"));
  EXPECT_FALSE(std::filesystem::exists(dir_.file(segment_file_name(2))));
  // Segment 1 is the log's next segment again, preallocated anew.
  EXPECT_EQ(read_bytes(preallocated), std::string(options_.segment_bytes, '\0'));
}

// DESIGN.md section 3 and wal.h: a segment is its preallocated size. Bytes appended past it
// (not by creditd, which never writes there) are not "a non-zero byte after" the records:
// they are cut and reported like a torn tail, not damage that stops the start.
TEST_F(WalDamageTest, BytesAppendedPastTheSegmentAreCutAndReportedNotDamage) {
  std::string garbage(100, '\0');
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 37 + 1);
  std::string bytes = read_bytes(path_);
  ASSERT_EQ(bytes.size(), options_.segment_bytes);
  write_bytes(path_, bytes + garbage + std::string(4096, '\0'));
  {
    auto opened = open_wal(dir_.path(), options_);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    expect_records(*opened, 0, 30);
    EXPECT_FALSE(opened->wal->recovery().torn_tail);
    const auto& cut = opened->wal->recovery().cut_past_segment;
    ASSERT_EQ(cut.size(), 1u);
    EXPECT_EQ(cut[0].file, path_);
    EXPECT_EQ(cut[0].offset, options_.segment_bytes);
    EXPECT_NE(cut[0].reason.find("4196 bytes past"), std::string::npos) << cut[0].reason;
    EXPECT_EQ(std::filesystem::file_size(path_), options_.segment_bytes);
    append_range(*opened->wal, 30, 31);
  }
  auto opened = open_wal(dir_.path(), options_);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 31);
  EXPECT_TRUE(opened->wal->recovery().cut_past_segment.empty());
}

TEST_F(WalDamageTest, BytesAppendedToTheUnusedPreallocatedSegmentAreNotDamage) {
  const std::string preallocated = dir_.file(segment_file_name(1));
  write_bytes(preallocated, read_bytes(preallocated) + "appended by something else");
  WalOptions options = options_;
  options.preallocate_in_background = false;
  auto opened = open_wal(dir_.path(), options);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 30);
  const auto& cut = opened->wal->recovery().cut_past_segment;
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_EQ(cut[0].file, preallocated);
  EXPECT_EQ(cut[0].offset, options_.segment_bytes);
  // Removed as unused, and preallocated anew.
  EXPECT_EQ(read_bytes(preallocated), std::string(options_.segment_bytes, '\0'));
}

TEST_F(WalDamageTest, ATornLastRecordWithBytesPastTheSegmentIsATornTail) {
  const auto [start, end] = records_.back();
  std::string bytes = read_bytes(path_);
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(end - 8),
            bytes.begin() + static_cast<std::ptrdiff_t>(end), '\0');
  write_bytes(path_, bytes + "appended");
  auto opened = open_wal(dir_.path(), options_);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 29);
  ASSERT_TRUE(opened->wal->recovery().torn_tail);
  EXPECT_EQ(opened->wal->recovery().torn_tail->offset, start);
  EXPECT_EQ(opened->wal->recovery().cut_past_segment.size(), 1u);
}

TEST_F(WalDamageTest, DamageInsideTheSegmentStaysDamageWithBytesPastIt) {
  // A failing record followed by intact ones, and a zero record header followed by data:
  // what lies past the segment changes neither.
  const std::string original = read_bytes(path_);
  const auto [start, end] = records_[10];
  flip_byte(path_, (start + end) / 2);
  write_bytes(path_, read_bytes(path_) + "appended");
  auto opened = open_wal(dir_.path(), options_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().detail("offset"), std::to_string(start));

  std::string zeroed = original;
  std::fill(zeroed.begin() + static_cast<std::ptrdiff_t>(start),
            zeroed.begin() + static_cast<std::ptrdiff_t>(start + kRecordHeaderBytes), '\0');
  write_bytes(path_, zeroed + "appended");
  opened = open_wal(dir_.path(), options_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().detail("offset"), std::to_string(start));
  EXPECT_EQ(read_bytes(path_), zeroed + "appended");  // refused: nothing cut
}

TEST(Wal, ASegmentWrittenWithALargerSegmentSizeIsReadWhole) {
  // Its records run past the segment size of the open that reads it: all of it is its
  // segment, nothing is cut.
  TempDir dir;
  WalOptions large;
  large.segment_bytes = 1 << 16;
  {
    auto opened = open_wal(dir.path(), large);
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 0, 100);
  }
  const std::string first = dir.file(segment_file_name(0));
  ASSERT_GT(records_of(first).back().second, kSmallSegmentBytes);
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 100);
  EXPECT_EQ(std::filesystem::file_size(first), large.segment_bytes);
  for (const WalDamage& cut : opened->wal->recovery().cut_past_segment) {
    EXPECT_NE(cut.file, first) << cut.reason;
  }
}

TEST(Wal, TornWriteAfterRestartFromCleanShutdownIsATornTail) {
  TempDir dir;
  WalOptions options;
  options.segment_bytes = 1 << 16;
  {
    auto opened = open_wal(dir.path(), options);
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 0, 5);
    ASSERT_TRUE(opened->wal->close().ok());
  }
  {
    auto opened = open_wal(dir.path(), options);  // writes an open record after shutdown
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 5, 6);
  }
  const std::string path = dir.file(segment_file_name(0));
  const auto records = records_of(path);
  ASSERT_TRUE(::truncate(path.c_str(), static_cast<off_t>(records.back().second - 3)) == 0);
  auto opened = open_wal(dir.path(), options);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 5);
  EXPECT_TRUE(opened->wal->recovery().torn_tail);
}

TEST(Wal, MissingMiddleSegmentIsAnErrorNamingIt) {
  TempDir dir;
  {
    auto opened = open_wal(dir.path(), small_segments());
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 0, 200);
  }
  // Segments 0-2 hold the records, 3 is the preallocated next one.
  ASSERT_TRUE(records_of(dir.file(segment_file_name(3))).empty());
  const std::string missing = dir.file(segment_file_name(1));
  ASSERT_TRUE(std::filesystem::remove(missing));
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(unquoted(opened.error().detail("file")), missing);
  EXPECT_NE(opened.error().message.find("missing segment"), std::string::npos);

  WalOptions repair = small_segments();
  repair.repair = true;
  const std::uint64_t kept = records_of(dir.file(segment_file_name(0))).size();
  auto repaired = open_wal(dir.path(), repair);
  ASSERT_TRUE(repaired.ok()) << repaired.error().message;
  expect_records(*repaired, 0, kept);
  EXPECT_EQ(repaired->wal->recovery().repaired->file, missing);
  // Segment 2, which holds records, is kept aside; the unused preallocated segment 3 is
  // deleted (it used to be kept as a .damaged file of zeros, 64 MiB in creditd).
  const std::string aside = dir.file(segment_file_name(2)) + ".damaged";
  EXPECT_TRUE(std::filesystem::exists(aside));
  EXPECT_EQ(repaired->wal->recovery().set_aside, std::vector<std::string>{aside});
  EXPECT_FALSE(std::filesystem::exists(dir.file(segment_file_name(3)) + ".damaged"));
  EXPECT_FALSE(std::filesystem::exists(dir.file(segment_file_name(3))));
}

TEST(Wal, BadSegmentHeaderIsAnErrorNamingFileAndOffset) {
  TempDir dir;
  {
    auto opened = open_wal(dir.path(), small_segments());
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 0, 100);
  }
  const std::string path = dir.file(segment_file_name(1));
  flip_byte(path, 20);  // inside segment_number
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(unquoted(opened.error().detail("file")), path);
  EXPECT_EQ(opened.error().detail("offset"), "32");  // the header checksum fails first
}

TEST(Wal, UnknownFormatVersionIsRefusedEvenWithRepair) {
  TempDir dir;
  {
    auto opened = open_wal(dir.path(), small_segments());
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 0, 3);
  }
  const std::string path = dir.file(segment_file_name(0));
  std::string bytes = read_bytes(path);
  SegmentHeader header;
  header.version = kFormatVersion + 1;
  encode_segment_header(header, reinterpret_cast<unsigned char*>(bytes.data()));
  write_bytes(path, bytes);
  WalOptions repair = small_segments();
  repair.repair = true;
  auto opened = open_wal(dir.path(), repair);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message.find("format version " + std::to_string(kFormatVersion + 1)),
            std::string::npos);
  EXPECT_EQ(read_bytes(path), bytes);  // untouched
}

TEST(Wal, AllZeroSegmentBeforeASegmentWithDataIsDamage) {
  TempDir dir;
  {
    auto opened = open_wal(dir.path(), small_segments());
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 0, 200);
    ASSERT_GE(opened->wal->segment_count(), 3u);
  }
  const std::string path = dir.file(segment_file_name(1));
  write_bytes(path, std::string(kSmallSegmentBytes, '\0'));
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(unquoted(opened.error().detail("file")), path);
  EXPECT_EQ(opened.error().detail("offset"), "0");
}

TEST(Wal, UnusedPreallocatedSegmentsAreRemovedAtOpen) {
  TempDir dir;
  {
    auto opened = open_wal(dir.path(), small_segments());
    ASSERT_TRUE(opened.ok());
    append_range(*opened->wal, 0, 3);
  }
  // Segment 1 is the preallocated next one; add a second unused one, cut short by a crash.
  write_bytes(dir.file(segment_file_name(2)), std::string(100, '\0'));
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 3);
  EXPECT_FALSE(std::filesystem::exists(dir.file(segment_file_name(2))));
}

TEST(Wal, InjectedWriteErrorFailsTheLogForGood) {
  TempDir dir;
  FaultInjectingFileOps ops;
  WalOptions options = small_segments();
  options.file_ops = &ops;
  options.preallocate_in_background = false;  // every counted call is the test's own
  {
    auto opened = open_wal(dir.path(), options);
    ASSERT_TRUE(opened.ok());
    Wal& wal = *opened->wal;
    append_range(wal, 0, 10);
    ops.writes_before_failure = 0;
    ASSERT_TRUE(wal.append(payload_of(10)).ok());  // buffered: the write is at sync
    const Status synced = wal.sync();
    ASSERT_FALSE(synced.ok());
    EXPECT_EQ(synced.error().code, ErrorCode::kStorageFailed);
    EXPECT_TRUE(wal.failed());
    ops.heal();  // the disk recovers; the log does not: the state in memory is suspect
    EXPECT_EQ(wal.append(payload_of(11)).error().code, ErrorCode::kStorageFailed);
    EXPECT_EQ(wal.sync().error().code, ErrorCode::kStorageFailed);
    EXPECT_EQ(wal.reserve(1).error().code, ErrorCode::kStorageFailed);
    EXPECT_EQ(wal.close().error().code, ErrorCode::kStorageFailed);
  }
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, 0, 10);
}

TEST(Wal, InjectedSyncErrorFailsTheLogForGood) {
  TempDir dir;
  FaultInjectingFileOps ops;
  WalOptions options = small_segments();
  options.file_ops = &ops;
  options.preallocate_in_background = false;  // every counted call is the test's own
  auto opened = open_wal(dir.path(), options);
  ASSERT_TRUE(opened.ok());
  Wal& wal = *opened->wal;
  append_range(wal, 0, 10);
  ops.syncs_before_failure = 0;
  ASSERT_TRUE(wal.append(payload_of(10)).ok());
  EXPECT_EQ(wal.sync().error().code, ErrorCode::kStorageFailed);
  ops.heal();
  // Retrying the fdatasync could report success for pages the kernel dropped.
  EXPECT_EQ(wal.sync().error().code, ErrorCode::kStorageFailed);
  EXPECT_EQ(wal.durable_lsn(), 10u);
}

TEST(Wal, FailedPreallocationRefusesTheAppendBeforeWritingAndHeals) {
  TempDir dir;
  FaultInjectingFileOps ops;
  ops.error_number = ENOSPC;
  WalOptions options = small_segments();
  options.file_ops = &ops;
  options.preallocate_in_background = false;
  auto opened = open_wal(dir.path(), options);
  ASSERT_TRUE(opened.ok());
  Wal& wal = *opened->wal;
  ops.fallocates_before_failure = 0;  // segment 1 exists already; segment 2 cannot
  std::uint64_t i = 0;
  Status refused = ok_status();
  for (; i < 1000; ++i) {
    auto lsn = wal.append(payload_of(i));
    if (!lsn) {
      refused = lsn.error();
      break;
    }
  }
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kStorageFailed);
  EXPECT_NE(refused.error().message.find("nothing was written"), std::string::npos);
  EXPECT_FALSE(wal.failed());
  EXPECT_EQ(wal.next_lsn(), i);
  EXPECT_EQ(wal.segment_count(), 2u);
  EXPECT_FALSE(std::filesystem::exists(dir.file(segment_file_name(2))));
  ops.heal();
  append_range(wal, i, i + 5);
  opened->wal.reset();
  auto reopened = open_wal(dir.path(), small_segments());
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  expect_records(*reopened, 0, i + 5);
}

// A log in small segments under `dir` holding records [0, 200): three or four segments.
auto open_log_of_200(const std::string& dir) {
  auto opened = open_wal(dir, small_segments());
  if (opened.ok()) append_range(*opened->wal, 0, 200);
  return opened;
}

TEST(Wal, TruncateBeforeDeletesOnlySegmentsTheSnapshotCovers) {
  TempDir dir;
  std::uint64_t first_lsn = 0;
  {
    auto opened = open_log_of_200(dir.path());
    ASSERT_TRUE(opened.ok());
    Wal& wal = *opened->wal;
    const std::size_t segments = wal.segment_count();
    auto deleted = wal.truncate_before(100);
    ASSERT_TRUE(deleted.ok());
    EXPECT_GT(*deleted, 0u);
    EXPECT_EQ(wal.segment_count(), segments - *deleted);
    first_lsn = wal.first_lsn();
    EXPECT_LE(first_lsn, 100u);  // LSN 100 and later are all kept
    EXPECT_GT(first_lsn, 50u);   // and not much more: a segment holds about 65 records
    auto none = wal.truncate_before(first_lsn);
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(*none, 0u);
    // Everything covered: only the segment being written stays.
    ASSERT_TRUE(wal.truncate_before(1000).ok());
    EXPECT_EQ(wal.segment_count(), 1u);
    first_lsn = wal.first_lsn();
  }
  auto on_disk = Wal::first_lsn_on_disk(dir.path());
  ASSERT_TRUE(on_disk.ok());
  EXPECT_EQ(*on_disk, first_lsn);
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  expect_records(*opened, first_lsn, 200);
  EXPECT_EQ(opened->wal->recovery().first_lsn, first_lsn);
}

TEST(Wal, BytesOnDiskCountsEverySegmentFileAndNothingElse) {
  TempDir dir;
  EXPECT_EQ(Wal::bytes_on_disk(dir.path() + "/none"), 0u);  // no directory
  auto opened = open_log_of_200(dir.path());
  ASSERT_TRUE(opened.ok());
  Wal& wal = *opened->wal;
  // Another file in the directory is not the log's.
  { std::ofstream(dir.path() + "/notes.txt") << "not a segment"; }
  // Segments are preallocated: each counts whole, the one being written too (and the
  // next one, when it is ready already).
  const std::uint64_t bytes = Wal::bytes_on_disk(dir.path());
  EXPECT_GE(bytes, wal.segment_count() * kSmallSegmentBytes);
  EXPECT_LE(bytes, (wal.segment_count() + 1) * kSmallSegmentBytes);
  EXPECT_EQ(bytes % kSmallSegmentBytes, 0u);
}

TEST(Wal, SegmentsReleasedButNotYetDeletedAreSkippedAtRecovery) {
  // The engine deletes released segments on another thread: a crash in between leaves
  // the oldest of them, or all, on disk. Recovery still reads a contiguous log that
  // starts at or before what the log kept, and a later delete finishes the job.
  TempDir dir;
  std::vector<std::string> released;
  std::uint64_t kept_from = 0;
  {
    auto opened = open_log_of_200(dir.path());
    ASSERT_TRUE(opened.ok());
    Wal& wal = *opened->wal;
    const std::size_t segments = wal.segment_count();
    auto r = wal.release_before(150);
    ASSERT_TRUE(r.ok());
    released = *r;
    ASSERT_GE(released.size(), 2u);
    EXPECT_EQ(wal.segment_count(), segments - released.size());
    kept_from = wal.first_lsn();
    for (const std::string& path : released) EXPECT_TRUE(std::filesystem::exists(path));
    // The crash came after the oldest was deleted: the rest stay.
    ASSERT_EQ(::unlink(released.front().c_str()), 0);
  }
  {
    auto opened = open_wal(dir.path(), small_segments());
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    const std::uint64_t first = opened->wal->recovery().first_lsn;
    EXPECT_LT(first, kept_from);  // the leftovers are read (a snapshot skips them)
    expect_records(*opened, first, 200);
  }
  // Deleting them later, oldest first, also when one is already gone.
  ASSERT_TRUE(Wal::delete_segments(released, dir.path()).ok());
  for (const std::string& path : released) EXPECT_FALSE(std::filesystem::exists(path));
  auto opened = open_wal(dir.path(), small_segments());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(opened->wal->recovery().first_lsn, kept_from);
  expect_records(*opened, kept_from, 200);
}

// Reads [from, end) of the log in `dir` with Wal::read_range.
Result<std::vector<std::pair<std::uint64_t, std::string>>> read_range(const std::string& dir,
                                                                      std::uint64_t from,
                                                                      std::uint64_t end) {
  std::vector<std::pair<std::uint64_t, std::string>> records;
  Status s = Wal::read_range(dir, from, end, [&](std::uint64_t lsn, std::string_view payload) {
    records.emplace_back(lsn, std::string(payload));
    return ok_status();
  });
  if (!s.ok()) return s.error();
  return records;
}

// The bytes of every file in `dir`, by name.
std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    files[entry.path().filename().string()] = read_bytes(entry.path().string());
  }
  return files;
}

TEST(Wal, ReadRangeDeliversExactlyTheRangeWhileTheLogIsOpenAndChangesNothing) {
  // A snapshot worker reads the log the server is still appending to: from the newest
  // snapshot's LSN to the LSN it was asked for, in any segment, and nothing after.
  TempDir dir;
  auto opened = open_log_of_200(dir.path());
  ASSERT_TRUE(opened.ok());
  ASSERT_GE(opened->wal->segment_count(), 3u);
  // The next segment is preallocated on a background thread: listed only once it exists
  // (before this wait the listing raced it, and failed once under AddressSanitizer).
  ASSERT_TRUE(opened->wal->prepare_next_segment().ok());
  const auto before = files_of(dir.path());
  for (auto [from, end] : {std::pair<std::uint64_t, std::uint64_t>{0, 200},
                           {37, 151},
                           {150, 151},
                           {199, 200},
                           {80, 80}}) {
    auto got = read_range(dir.path(), from, end);
    ASSERT_TRUE(got.ok()) << got.error().message;
    testing::Replayed r;
    r.records = *got;
    expect_records(r, from, end);
  }
  EXPECT_EQ(files_of(dir.path()), before);
  // The log goes on after the reads.
  append_range(*opened->wal, 200, 210);
  auto got = read_range(dir.path(), 190, 210);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->size(), 20u);
}

TEST(Wal, ReadRangeSkipsSegmentsBelowItsStartEvenWhenTheyAreGone) {
  // The server deletes the segments a snapshot covers on another thread, maybe while a
  // worker lists them.
  TempDir dir;
  auto opened = open_log_of_200(dir.path());
  ASSERT_TRUE(opened.ok());
  auto released = opened->wal->release_before(150);
  ASSERT_TRUE(released.ok());
  ASSERT_GE(released->size(), 2u);
  ASSERT_EQ(::unlink(released->front().c_str()), 0);
  const std::uint64_t kept_from = opened->wal->first_lsn();
  auto got = read_range(dir.path(), kept_from + 1, 200);
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_FALSE(got->empty());
  EXPECT_EQ(got->front().first, kept_from + 1);
  EXPECT_EQ(got->back().first, 199u);
}

TEST(Wal, ReadRangePastTheLogsEndOrBeforeItsStartIsAnError) {
  TempDir dir;
  auto opened = open_log_of_200(dir.path());
  ASSERT_TRUE(opened.ok());
  auto past = read_range(dir.path(), 10, 201);
  ASSERT_FALSE(past.ok());
  EXPECT_NE(past.error().message.find("ends at LSN 200"), std::string::npos)
      << past.error().message;
  ASSERT_TRUE(opened->wal->truncate_before(150).ok());
  auto gone = read_range(dir.path(), 5, 160);
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.error().message.find("holds LSN 5"), std::string::npos) << gone.error().message;
}

TEST_F(WalDamageTest, ReadRangeOverADamagedRecordIsAnErrorNamingFileAndOffsetAndRepairsNothing) {
  flip_byte(path_, records_[10].first + kRecordHeaderBytes + 3);
  const std::string bytes = read_bytes(path_);
  auto below = read_range(dir_.path(), 0, 10);  // the records before it are intact
  ASSERT_TRUE(below.ok()) << below.error().message;
  EXPECT_EQ(below->size(), 10u);
  auto over = read_range(dir_.path(), 0, 20);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, ErrorCode::kStorageFailed);
  EXPECT_NE(over.error().message.find(path_), std::string::npos) << over.error().message;
  EXPECT_NE(over.error().message.find(std::to_string(records_[10].first)), std::string::npos)
      << over.error().message;
  EXPECT_EQ(read_bytes(path_), bytes);
}

}  // namespace
}  // namespace credit::store
