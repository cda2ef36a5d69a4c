// tests/analytics/import_log_test.cc
// imported.ndjson (src/analytics/import_log.h): what an append makes durable comes back on
// open, a torn last line is cut and reported, a damaged line stops the open with its
// line number, and Analytics keeps imported history across a restart.
#include "analytics/import_log.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "analytics/live.h"

namespace credit::analytics {
namespace {

namespace fs = std::filesystem;

ledger::Event imported(int i) {
  ledger::Event e;
  e.at_ms = 1'770'000'000'000 + i * 3'600'000LL;
  e.account_id = "acme";
  e.user_id = "old";
  e.type = ledger::EventType::kCharge;
  e.kind = pricing::Kind::kAgentPrompt;
  e.pool = "credits";
  e.credits = Millicredits::from_mc(7'000 + i);
  e.idempotency_key = "k-" + std::to_string(i);
  e.metadata.file = "src/legacy.js";
  e.imported = true;
  return e;
}

class ImportLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("creditd-import-log-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / kImportLogFile).string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<ledger::Event> read_all(Status* status = nullptr, std::uint64_t* torn = nullptr) {
    std::vector<ledger::Event> out;
    auto log = ImportLog::open(path_, [&](ledger::Event& e) { out.push_back(e); });
    if (status != nullptr) *status = log.ok() ? ok_status() : Status(log.error());
    if (log.ok() && torn != nullptr) *torn = (*log)->torn_bytes();
    return out;
  }
  std::string contents() const {
    std::ifstream f(path_, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(ImportLogTest, AppendedEventsComeBackInOrderMarkedImported) {
  {
    auto log = ImportLog::open(path_, [](ledger::Event&) { FAIL() << "a new file has no events"; });
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->append({imported(0), imported(1)}).ok());
    ASSERT_TRUE((*log)->append({imported(2)}).ok());
  }
  std::vector<ledger::Event> back = read_all();
  ASSERT_EQ(back.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(back[i].idempotency_key, "k-" + std::to_string(i));
    EXPECT_EQ(back[i].credits.mc(), 7'000 + i);
    EXPECT_EQ(back[i].at_ms, imported(i).at_ms);
    EXPECT_EQ(back[i].metadata.file, "src/legacy.js");
    EXPECT_TRUE(back[i].imported);
  }
}

TEST_F(ImportLogTest, ATornLastLineIsCutAndTheRestKept) {
  {
    auto log = ImportLog::open(path_, [](ledger::Event&) {});
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->append({imported(0), imported(1)}).ok());
  }
  const std::string whole = contents();
  {
    std::ofstream f(path_, std::ios::app | std::ios::binary);
    f << R"({"at":"2026-02-0)";  // a crash in the middle of the next append
  }
  std::uint64_t torn = 0;
  Status s = ok_status();
  std::vector<ledger::Event> back = read_all(&s, &torn);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(back.size(), 2u);
  EXPECT_EQ(torn, 16u);
  EXPECT_EQ(contents(), whole);  // cut back to the last complete line
  // And the next append continues from there.
  {
    auto log = ImportLog::open(path_, [](ledger::Event&) {});
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->append({imported(2)}).ok());
  }
  EXPECT_EQ(read_all().size(), 3u);
}

TEST_F(ImportLogTest, ADamagedLineStopsTheOpenNamingFileAndLine) {
  {
    auto log = ImportLog::open(path_, [](ledger::Event&) {});
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->append({imported(0), imported(1), imported(2)}).ok());
  }
  std::string text = contents();
  const std::size_t second = text.find('\n') + 1;
  text[second] = 'X';  // line 2 no longer parses
  {
    std::ofstream f(path_, std::ios::trunc | std::ios::binary);
    f << text;
  }
  Status s = ok_status();
  read_all(&s);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kStorageFailed);
  EXPECT_NE(s.error().message.find(path_), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("line 2"), std::string::npos) << s.error().message;
}

TEST_F(ImportLogTest, AnalyticsKeepsImportedHistoryAcrossARestart) {
  const TimeRange feb{1'769'904'000'000, 1'772'323'200'000};  // 2026-02-01 .. 2026-03-01
  {
    auto a = Analytics::open(dir_.string());
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE((*a)->add_imported({imported(0), imported(1)}).ok());
  }
  auto a = Analytics::open(dir_.string());
  ASSERT_TRUE(a.ok());
  (*a)->sync();
  std::lock_guard lock((*a)->mu());
  UsageResult u = (*a)->rollups().usage("acme", "credits", GroupBy::kFile, feb);
  EXPECT_EQ(u.total_mc, 14'001);
  EXPECT_EQ(u.count, 2);
  EXPECT_TRUE((*a)->rollups().imported_key_seen("acme", "k-1"));
}

}  // namespace
}  // namespace credit::analytics
