// Whole files: reading one, and replacing one atomically. Every failure is a ValueError that
// starts with the caller's op and names the path: "[safetensors] cannot read '/tmp': Is a directory".
#pragma once

#include <string>
#include <string_view>

namespace minidl {

/// The bytes of the file at path; throws ValueError naming op and path (missing, a directory,
/// unreadable).
std::string read_file(const std::string& path, const char* op);

/// Replaces the file at path with data: writes a temporary file with a unique name beside it,
/// syncs it, and renames it over path. Readers see the old file or the new one, never a mix;
/// concurrent writers never share a temporary file, and the last rename wins. Throws ValueError
/// naming op and the path (the temporary file is removed).
void write_file_atomically(const std::string& path, std::string_view data, const char* op);

}  // namespace minidl
