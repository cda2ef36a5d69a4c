// tests/store/durable_file_test.cc: a small file written whole and durably, or not at all.
#include "store/durable_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_util.h"

namespace credit::store {
namespace {

using testing::TempDir;

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(DurableFile, WritesTheWholeFileWithItsModeAndLeavesNoTmp) {
  TempDir dir;
  const std::string path = dir.file("admin.key");
  ASSERT_TRUE(write_file_durably(path, "secret\n", 0600).ok());
  EXPECT_EQ(read_all(path), "secret\n");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  // Written again: replaced whole.
  ASSERT_TRUE(write_file_durably(path, "other\n", 0600).ok());
  EXPECT_EQ(read_all(path), "other\n");
}

TEST(DurableFile, AFailureLeavesThePathAsItWasAndNamesTheFile) {
  TempDir dir;
  const std::string path = dir.file("missing-dir/admin.key");
  Status s = write_file_durably(path, "secret\n", 0600);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kStorageFailed);
  EXPECT_NE(s.error().message.find("admin.key.tmp"), std::string::npos) << s.error().message;
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(DurableFile, AppendsCreateTheFileWithItsModeAndAddToIt) {
  TempDir dir;
  const std::string path = dir.file("alerts.log");
  ASSERT_TRUE(append_durably(path, "one\n", 0600).ok());
  ASSERT_TRUE(append_durably(path, "two\n", 0600).ok());
  EXPECT_EQ(read_all(path), "one\ntwo\n");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Status s = append_durably(dir.file("missing-dir/alerts.log"), "x\n", 0600);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("missing-dir/alerts.log"), std::string::npos);
}

}  // namespace
}  // namespace credit::store
